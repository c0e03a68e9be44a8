package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// busybox is Debian's static busybox (package busybox-static): static, so
// that it runs in an image with no libc.
const busybox = "/bin/busybox"

// rootfsLabel carries the digest of the image's root filesystem, so that an
// image left by an older version of this package (or another busybox) is
// replaced rather than trusted because of its tag.
const rootfsLabel = "org.volperm.testenv.rootfs"

// The test image's accounts: root, www-data (33) whose home exists, node
// (1000:1000) with a home it owns, big above the 16-bit range (70000) and
// nobody; a group shared by node and www-data, and a group with no members.
const (
	imagePasswd = `root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/false
node:x:1000:1000:node:/home/node:/bin/sh
big:x:70000:70000:big:/nonexistent:/bin/sh
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

// errNoBusybox marks a host without a usable static busybox: a missing
// requirement, not a failure.
var errNoBusybox = errors.New("no usable static busybox")

// rootfs is the image's root filesystem as a tar stream, built once per
// process, and its digest.
var rootfs = sync.OnceValues(func() (rootfsTar, error) {
	data, err := buildRootfs()
	if err != nil {
		return rootfsTar{}, err
	}
	sum := sha256.Sum256(data)
	return rootfsTar{data: data, digest: "sha256:" + hex.EncodeToString(sum[:])}, nil
})

type rootfsTar struct {
	data   []byte
	digest string
}

var images struct {
	sync.Mutex
	done map[string]bool // daemon hosts known to have the current image
}

// Image makes sure the test image exists in daemon d and returns its
// reference. The image is busybox with a few accounts, imported from a tar
// stream: no registry is involved. It is imported once per daemon and
// reused when the daemon already has it.
func Image(t testing.TB, d *Daemon) string {
	t.Helper()
	err := ensureImage(d)
	if errors.Is(err, errNoBusybox) {
		unmet(t, "needs Debian's static busybox for the test image: %v", err)
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return ImageRef
}

func ensureImage(d *Daemon) error {
	images.Lock()
	defer images.Unlock()
	if images.done[d.Host] {
		return nil
	}
	rf, err := rootfs()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if current(ctx, d, rf.digest) == nil {
		markImage(d)
		return nil
	}
	res, err := d.Client.ImageImport(ctx, client.ImageImportSource{Source: bytes.NewReader(rf.data), SourceName: "-"}, ImageRef,
		client.ImageImportOptions{Changes: []string{
			`CMD ["sh"]`,
			"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"LABEL " + rootfsLabel + "=" + rf.digest,
		}})
	if err != nil {
		return fmt.Errorf("importing %s into %s: %w", ImageRef, d.Host, err)
	}
	defer res.Close()
	if err := readProgress(res); err != nil {
		return fmt.Errorf("importing %s into %s: %w", ImageRef, d.Host, err)
	}
	if err := current(ctx, d, rf.digest); err != nil {
		return fmt.Errorf("checking the imported image: %w", err)
	}
	markImage(d)
	return nil
}

func markImage(d *Daemon) {
	if images.done == nil {
		images.done = map[string]bool{}
	}
	images.done[d.Host] = true
}

// current reports (as nil) whether the daemon's ImageRef has this root
// filesystem.
func current(ctx context.Context, d *Daemon, digest string) error {
	img, err := d.Client.ImageInspect(ctx, ImageRef)
	if err != nil {
		return fmt.Errorf("inspecting %s: %w", ImageRef, err)
	}
	if img.Config == nil || img.Config.Labels[rootfsLabel] != digest {
		return fmt.Errorf("%s in %s is not this package's current image", ImageRef, d.Host)
	}
	return nil
}

// readProgress drains the import's JSON message stream, in which the
// daemon reports errors after the HTTP status is already sent.
func readProgress(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading the daemon's progress: %w", err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

// buildRootfs writes the root filesystem straight into a tar stream, with
// numeric owners and modes as given, so that the result does not depend on
// who may chown what in a temporary directory, and the same host always
// gives the same digest.
func buildRootfs() ([]byte, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s (apt-get install busybox-static): %w", errNoBusybox, busybox, err)
	}
	if err := checkStatic(busybox); err != nil {
		return nil, err
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%w: listing the applets of %s: %w", errNoBusybox, busybox, err)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(h *tar.Header, data []byte) {
		h.ModTime = mtime
		h.Size = int64(len(data))
		if err == nil {
			err = tw.WriteHeader(h)
		}
		if err == nil && len(data) > 0 {
			_, err = tw.Write(data)
		}
	}
	dir := func(name string, mode int64, uid, gid int) {
		add(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid}, nil)
	}
	for _, d := range []string{"bin", "etc", "home", "usr", "usr/bin", "usr/sbin", "var", "var/www"} {
		dir(d, 0o755, 0, 0)
	}
	dir("root", 0o700, 0, 0)
	dir("tmp", 0o1777, 0, 0)
	dir("home/node", 0o755, 1000, 1000)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755}, bb)
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777}, nil)
	}
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644}, []byte(imagePasswd))
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/group", Mode: 0o644}, []byte(imageGroup))
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("writing the image's root filesystem: %w", err)
	}
	return buf.Bytes(), nil
}

// checkStatic refuses a dynamically linked busybox, which could not run in
// an image without its loader and libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%w: reading %s: %w", errNoBusybox, path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s is dynamically linked (apt-get install busybox-static)", errNoBusybox, path)
		}
	}
	return nil
}

// BuildImage builds an image in daemon d from a Dockerfile and the files
// of its context, without a registry (FROM only local images or scratch),
// tags it and removes it when the test ends.
func BuildImage(t testing.TB, d *Daemon, tag string, files map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := d.Client.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("testenv: building %s: %v", tag, err)
	}
	defer res.Body.Close()
	start := time.Now()
	if err := readProgress(res.Body); err != nil {
		t.Fatalf("testenv: building %s: %v", tag, err)
	}
	t.Logf("built %s in %v", tag, time.Since(start))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := d.Client.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true}); err != nil {
			t.Errorf("testenv: removing %s: %v", tag, err)
		}
	})
}
