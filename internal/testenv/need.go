// Package testenv is test support for what only the real kernel and the
// real Docker daemon can decide: it builds a local test image without a
// registry, starts a second dockerd with --userns-remap for a given
// /etc/subuid and /etc/subgid layout (restoring the files afterwards), and
// runs containers with bind mounts, reporting what the host sees.
//
// Under CI=true a missing requirement fails the test; elsewhere it skips
// with a one-line reason, so `go test ./...` stays green on a laptop.
package testenv

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// InCI reports whether tests run under CI=true, where nothing may skip.
func InCI() bool { return os.Getenv("CI") == "true" }

func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

// NeedRoot stops the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "needs root (chown, ACLs, a second dockerd)")
	}
}

// NeedCommand stops the test unless name is on PATH.
func NeedCommand(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		unavailable(t, "needs %s on PATH (make test installs it)", name)
	}
}

// Daemon is a dockerd the tests talk to.
type Daemon struct {
	Host     string
	Client   *client.Client
	DataRoot string
	PID      int
}

var (
	defaultOnce sync.Once
	defaultD    *Daemon
	defaultErr  error
)

// NeedDocker returns the default daemon (DOCKER_HOST or
// /var/run/docker.sock), or stops the test when none answers.
func NeedDocker(t testing.TB) *Daemon {
	t.Helper()
	defaultOnce.Do(func() {
		host := os.Getenv("DOCKER_HOST")
		if host == "" {
			host = "unix:///var/run/docker.sock"
		}
		c, err := client.New(client.FromEnv, client.WithHost(host))
		if err != nil {
			defaultErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		info, err := c.Info(ctx, client.InfoOptions{})
		if err != nil {
			defaultErr = err
			return
		}
		defaultD = &Daemon{Host: host, Client: c, DataRoot: info.Info.DockerRootDir}
	})
	if defaultErr != nil || defaultD == nil {
		unavailable(t, "needs a Docker daemon: %v (make test starts one)", defaultErr)
	}
	return defaultD
}
