package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// RunOpts describes one container.
type RunOpts struct {
	User       string
	GroupAdd   []string
	Binds      []string // "host:ctr[:ro]": the daemon creates missing sources
	UsernsMode string
	Cmd        []string
	Env        []string
}

// Run creates, starts and waits for a container without a network and
// returns its combined output and exit code. A container the daemon
// refuses to create or start is reported with code -1 and the daemon's
// error as output.
func (d *Daemon) Run(t testing.TB, image string, o RunOpts) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cr, err := d.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, User: o.User, Cmd: o.Cmd, Env: o.Env},
		HostConfig: &container.HostConfig{NetworkMode: "none", Binds: o.Binds, GroupAdd: o.GroupAdd,
			UsernsMode: container.UsernsMode(o.UsernsMode)},
	})
	if err != nil {
		return err.Error(), -1
	}
	defer func() {
		_, _ = d.Client.ContainerRemove(context.Background(), cr.ID, client.ContainerRemoveOptions{Force: true})
	}()
	if _, err := d.Client.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
		return err.Error(), -1
	}
	wait := d.Client.ContainerWait(ctx, cr.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code int
	select {
	case res := <-wait.Result:
		code = int(res.StatusCode)
	case err := <-wait.Error:
		t.Fatalf("waiting for container: %v", err)
	}
	logs, err := d.Client.ContainerLogs(ctx, cr.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("reading container output: %v", err)
	}
	defer logs.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, logs); err != nil && err != io.EOF {
		t.Fatalf("reading container output: %v", err)
	}
	return out.String(), code
}

// Owner is a uid:gid pair.
type Owner struct{ UID, GID uint32 }

func sanitize(spec string) string { return strings.NewReplacer(":", "_", "/", "_").Replace(spec) }

// CreateAs runs, for each container user spec, a container that creates
// /x/f-<spec> in dir (bind-mounted at /x) and returns what the host sees
// as the owner of each file.
func (d *Daemon) CreateAs(t testing.TB, image, dir string, users []string) map[string]Owner {
	t.Helper()
	got := map[string]Owner{}
	for _, u := range users {
		name := "f-" + sanitize(u)
		out, code := d.Run(t, image, RunOpts{User: u, Binds: []string{dir + ":/x"}, Cmd: []string{"touch", "/x/" + name}})
		if code != 0 {
			t.Fatalf("container as %s could not create a file: exit %d: %s", u, code, out)
		}
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got[u] = ownerOf(fi)
	}
	return got
}

// SeenAs returns, for each entry of dir, the owner a container (as root)
// sees through a bind mount at /x.
func (d *Daemon) SeenAs(t testing.TB, image, dir string) map[string]Owner {
	t.Helper()
	out, code := d.Run(t, image, RunOpts{User: "0:0", Binds: []string{dir + ":/x"}, Cmd: []string{"sh", "-c", "cd /x && stat -c '%n %u %g' *"}})
	if code != 0 {
		t.Fatalf("listing owners in a container: exit %d: %s", code, out)
	}
	seen := map[string]Owner{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("unexpected stat line %q", line)
		}
		u, err1 := strconv.ParseUint(f[1], 10, 32)
		g, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil {
			t.Fatalf("unexpected stat line %q", line)
		}
		seen[f[0]] = Owner{uint32(u), uint32(g)}
	}
	return seen
}

func (o Owner) String() string { return fmt.Sprintf("%d:%d", o.UID, o.GID) }
