package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var builds sync.Map // package path -> *buildResult

type buildResult struct {
	once sync.Once
	path string
	out  []byte
	err  error
}

// Build compiles a main package of this module (with the given build
// tags) into a static binary once per test process and returns its path,
// for copying into containers.
func Build(t testing.TB, pkg string, tags ...string) string {
	t.Helper()
	key := pkg + " " + strings.Join(tags, ",")
	v, _ := builds.LoadOrStore(key, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "vp-build-")
		if err != nil {
			b.err = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-trimpath", "-tags", strings.Join(tags, ","), "-o", b.path, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		b.out, b.err = cmd.CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, b.err, b.out)
	}
	return b.path
}

// PingBinary is a static program that GETs /_ping over a unix socket.
func PingBinary(t testing.TB) string {
	return Build(t, "github.com/volperm/volperm/internal/testenv/ping")
}
