package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// runTimeout bounds one container from creation to removal.
const runTimeout = 2 * time.Minute

// RunOpts describes one container.
type RunOpts struct {
	User       string   // the --user spec; "" for the image's default (root)
	GroupAdd   []string // --group-add
	Binds      []string // "hostpath:ctrpath[:ro]"; the daemon creates missing sources
	UsernsMode string   // "" or "host"
	Cmd        []string // run as is: the image has no entrypoint
	Env        []string // "NAME=value"
	ReadOnly   bool     // --read-only: the root filesystem is mounted read-only
	CapDrop    []string // --cap-drop
}

// Run creates, starts and waits for a container without a network, removes
// it, and returns its output and its exit code. The output holds stdout and
// stderr together: each stream in order, but the daemon logs the two
// separately, so lines of one may come before earlier lines of the other. A
// non-zero exit is not a failure. A container the daemon refuses to create
// or start returns the daemon's error as output and code -1, because tests
// prove such refusals too; any other Engine API failure fails the test.
func (d *Daemon) Run(t testing.TB, image string, o RunOpts) (out string, code int) {
	t.Helper()
	c, err := d.create(image, o)
	if err != nil {
		return err.Error(), -1
	}
	defer c.remove(t)
	if err := c.start(); err != nil {
		return err.Error(), -1
	}
	code = c.Wait(t)
	return c.Logs(t), code
}

// Container is a container a test drives step by step: started more than
// once, signalled, waited for.
type Container struct {
	d  *Daemon
	ID string
}

// Create creates a container as Run does, without starting it; it is
// removed when the test ends.
func (d *Daemon) Create(t testing.TB, image string, o RunOpts) *Container {
	t.Helper()
	c, err := d.create(image, o)
	if err != nil {
		t.Fatalf("testenv: creating a container: %v", err)
	}
	t.Cleanup(func() { c.remove(t) })
	return c
}

func (d *Daemon) create(image string, o RunOpts) (*Container, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	created, err := d.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:  image,
			User:   o.User,
			Cmd:    o.Cmd,
			Env:    o.Env,
			Labels: map[string]string{"org.volperm.testenv": "run"},
		},
		HostConfig: &container.HostConfig{
			Binds:    o.Binds,
			GroupAdd: o.GroupAdd,
			// No network: remap daemons run with --bridge=none, and no
			// test needs one.
			NetworkMode:    "none",
			UsernsMode:     container.UsernsMode(o.UsernsMode),
			ReadonlyRootfs: o.ReadOnly,
			CapDrop:        o.CapDrop,
			// The output is read back through the API, which the default
			// daemon's configured log driver might not support.
			LogConfig: container.LogConfig{Type: "json-file"},
		},
	})
	if err != nil {
		return nil, err
	}
	return &Container{d: d, ID: created.ID}, nil
}

func (c *Container) remove(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.d.Client.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Errorf("testenv: removing container %.12s: %v", c.ID, err)
	}
}

func (c *Container) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	_, err := c.d.Client.ContainerStart(ctx, c.ID, client.ContainerStartOptions{})
	return err
}

// Start starts (or starts again) the container.
func (c *Container) Start(t testing.TB) {
	t.Helper()
	if err := c.start(); err != nil {
		t.Fatalf("testenv: starting container %.12s: %v", c.ID, err)
	}
}

// Wait waits until the container is not running and returns its exit code.
func (c *Container) Wait(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	wait := c.d.Client.ContainerWait(ctx, c.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case res := <-wait.Result:
		if res.Error != nil {
			t.Fatalf("testenv: waiting for container %.12s: %s", c.ID, res.Error.Message)
		}
		return int(res.StatusCode)
	case err := <-wait.Error:
		t.Fatalf("testenv: waiting for container %.12s: %v", c.ID, err)
	}
	return 0
}

// Kill sends the container's process (its PID 1) a signal such as "TERM".
func (c *Container) Kill(t testing.TB, signal string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	if _, err := c.d.Client.ContainerKill(ctx, c.ID, client.ContainerKillOptions{Signal: signal}); err != nil {
		t.Fatalf("testenv: signalling container %.12s: %v", c.ID, err)
	}
}

// Logs returns everything the container has printed so far, over all its
// starts, stdout and stderr together (see Run).
func (c *Container) Logs(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	logs, err := c.d.Client.ContainerLogs(ctx, c.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("testenv: reading the output of container %.12s: %v", c.ID, err)
	}
	defer logs.Close()
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, logs); err != nil {
		t.Fatalf("testenv: reading the output of container %.12s: %v", c.ID, err)
	}
	return buf.String()
}

// Owner is a uid:gid pair.
type Owner struct{ UID, GID uint32 }

func (o Owner) String() string { return fmt.Sprintf("%d:%d", o.UID, o.GID) }

// CreateAs runs, for each container user spec (such as "0", "33:33" or
// "1000"), a container as that user that creates /x/f-<spec> (with
// characters other than letters, digits, '.', '_' and '-' replaced by '_')
// in dir, bind-mounted at /x; it returns, for each spec, the owner the host
// sees. The caller makes dir writable for those users (chmod 1777, say). A
// file left from an earlier call is removed first, so that the owner is
// the creator's.
func (d *Daemon) CreateAs(t testing.TB, image, dir string, users []string) map[string]Owner {
	t.Helper()
	got := make(map[string]Owner, len(users))
	for _, spec := range users {
		name := "f-" + sanitize(spec)
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("testenv: removing %s: %v", path, err)
		}
		out, code := d.Run(t, image, RunOpts{User: spec, Binds: []string{dir + ":/x"}, Cmd: []string{"touch", "/x/" + name}})
		if code != 0 {
			t.Fatalf("testenv: a container as %q could not create /x/%s (exit %d): %s", spec, name, code, out)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatalf("testenv: the container as %q exited 0 but the host sees no file: %v", spec, err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		got[spec] = Owner{st.Uid, st.Gid}
	}
	return got
}

// sanitize makes a user spec usable in a file name.
func sanitize(spec string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, spec)
}

// SeenAs runs a container as root with dir bind-mounted at /x and returns,
// for each entry of dir (not recursive, dot files included), the owner the
// container sees. Names with newlines are not supported.
func (d *Daemon) SeenAs(t testing.TB, image, dir string) map[string]Owner {
	t.Helper()
	// Owners first, so that names with spaces survive the parsing.
	out, code := d.Run(t, image, RunOpts{User: "0:0", Binds: []string{dir + ":/x"},
		Cmd: []string{"find", "/x", "-mindepth", "1", "-maxdepth", "1", "-exec", "stat", "-c", "%u %g %n", "{}", "+"}})
	if code != 0 {
		t.Fatalf("testenv: listing the owners under /x in a container (exit %d): %s", code, out)
	}
	seen := map[string]Owner{}
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, " ", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], "/x/") {
			t.Fatalf("testenv: unexpected stat line %q in:\n%s", line, out)
		}
		uid, err1 := strconv.ParseUint(f[0], 10, 32)
		gid, err2 := strconv.ParseUint(f[1], 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("testenv: parsing stat line %q: %v", line, err)
		}
		seen[strings.TrimPrefix(f[2], "/x/")] = Owner{uint32(uid), uint32(gid)}
	}
	return seen
}
