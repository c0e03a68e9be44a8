package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// ImageRef is the test image's reference.
const ImageRef = "volperm-test:1"

// Accounts of the test image: root, www-data (33), node (1000:1000), a
// user above the 16-bit range (70000), nobody, a group shared by node and
// www-data, and a group with no members.
const (
	imagePasswd = `root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/sh
node:x:1000:1000::/home/node:/bin/sh
big:x:70000:70000::/home/big:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`
	imageGroup = `root:x:0:
www-data:x:33:
node:x:1000:
big:x:70000:
nogroup:x:65534:
shared:x:2000:node,www-data
lonely:x:3000:
`
)

var (
	tarOnce sync.Once
	tarData []byte
	tarErr  error
	imgMu   sync.Mutex
	imgDone = map[string]bool{}
)

// Image makes sure the test image exists in d and returns its reference.
// It is a busybox (Debian's static build) root filesystem imported from a
// tar stream: no registry is involved.
func Image(t testing.TB, d *Daemon) string {
	t.Helper()
	imgMu.Lock()
	defer imgMu.Unlock()
	if imgDone[d.Host] {
		return ImageRef
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := d.Client.ImageInspect(ctx, ImageRef); err == nil {
		imgDone[d.Host] = true
		return ImageRef
	}
	tarOnce.Do(func() { tarData, tarErr = rootfsTar() })
	if tarErr != nil {
		unavailable(t, "building the test image: %v", tarErr)
	}
	res, err := d.Client.ImageImport(ctx, client.ImageImportSource{Source: bytes.NewReader(tarData), SourceName: "-"}, ImageRef,
		client.ImageImportOptions{Changes: []string{`CMD ["sh"]`, "ENV PATH=/bin"}})
	if err != nil {
		t.Fatalf("importing the test image into %s: %v", d.Host, err)
	}
	// The import reports errors in its JSON stream.
	var out bytes.Buffer
	_, _ = out.ReadFrom(res)
	res.Close()
	if strings.Contains(out.String(), `"error"`) {
		t.Fatalf("importing the test image into %s: %s", d.Host, out.String())
	}
	imgDone[d.Host] = true
	return ImageRef
}

func rootfsTar() ([]byte, error) {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("reading Debian's static busybox (apt-get install busybox-static): %w", err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, uid, gid int) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid})
	}
	file := func(name string, mode int64, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))})
		_, _ = tw.Write(data)
	}
	for _, d := range []string{"bin", "etc", "root", "var", "var/www", "home", "dev", "proc", "sys", "x"} {
		dir(d, 0o755, 0, 0)
	}
	dir("tmp", 0o1777, 0, 0)
	dir("home/node", 0o755, 1000, 1000)
	// /home/big stays root-owned: a file owned by 70000 cannot be unpacked
	// by a daemon whose remap has 65536 ids ("Container ID 70000 cannot be
	// mapped to a host ID"), which is exactly what VP-rules warn about.
	dir("home/big", 0o755, 0, 0)
	file("bin/busybox", 0o755, bb)
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777})
	}
	file("etc/passwd", 0o644, []byte(imagePasswd))
	file("etc/group", 0o644, []byte(imageGroup))
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
