package entrypoint

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/testenv"
)

// The tests below run volperm exec as the entrypoint of real containers on
// the real daemon: the slim static build, bind-mounted at /volperm.

func volpermBinary(t *testing.T) string {
	return testenv.Build(t, "github.com/volperm/volperm/cmd/volperm", "execonly")
}

// workDir is a host directory owned by uid:gid, mode 0755: only that uid
// can write it.
func workDir(t *testing.T, uid, gid int) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func field(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `=(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s= line in the output:\n%s", name, out)
	}
	return m[1]
}

// report is a shell snippet that prints who the command runs as.
const report = `echo uid=$(id -u) gid=$(id -g) user=$(id -un) group=$(id -gn); echo home=$HOME env=$USER/$LOGNAME pid=$$; ` +
	`sed -n 's/^\(Groups\|CapEff\|CapPrm\|CapAmb\):[[:space:]]*/\1=/p' /proc/self/status`

// A work dir owned by host uid 1234, which has no account in the image:
// the command runs as 1234 with node's name and home, its files are
// 1234's on the host, and a restart does no re-owning.
func TestContainerMatchHostOwner(t *testing.T) {
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	vp := volpermBinary(t)
	dir := workDir(t, 1234, 1234)
	// A host file of another host user (uid 1000, node's old uid) in the
	// bind mount, which sits inside node's home: re-owning the home must
	// not cross into it.
	other := filepath.Join(dir, "other")
	write(t, other, "x", 0o644)
	if err := os.Chown(other, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	c := d.Create(t, img, testenv.RunOpts{
		Binds: []string{vp + ":/volperm:ro", dir + ":/home/node/work"},
		Cmd: []string{"/volperm", "exec", "--verbose", "--user", "node", "--match", "/home/node/work", "--",
			"sh", "-c", report + `; touch ~/work/made-$(date +%s%N); stat -c 'ctime=%Z %u:%g' /home/node >> ~/work/homes`},
	})
	c.Start(t)
	if code := c.Wait(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, c.Logs(t))
	}
	out := c.Logs(t)
	if got := field(t, out, "uid"); got != "1234 gid=1234 user=node group=node" {
		t.Errorf("runs as %q, want 1234 gid=1234 user=node group=node", got)
	}
	if got := field(t, out, "home"); got != "/home/node env=node/node pid=1" {
		t.Errorf("home/env/pid %q", got)
	}
	if got := field(t, out, "CapEff") + field(t, out, "CapPrm") + field(t, out, "CapAmb"); got != strings.Repeat("0", 48) {
		t.Errorf("capabilities left: %s", got)
	}
	if got := owner(t, other); got != [2]uint32{1000, 1000} {
		t.Errorf("a host file in the bind mount under the home was re-owned to %v", got)
	}
	made, _ := filepath.Glob(filepath.Join(dir, "made-*"))
	if len(made) != 1 {
		t.Fatalf("files made: %v", made)
	}
	if got := owner(t, made[0]); got != [2]uint32{1234, 1234} {
		t.Errorf("the host sees the command's file as %v, want 1234:1234", got)
	}

	c.Start(t)
	if code := c.Wait(t); code != 0 {
		t.Fatalf("restart: exit %d:\n%s", code, c.Logs(t))
	}
	all := c.Logs(t)
	if n := strings.Count(all, "volperm exec: running sh"); n != 2 {
		t.Fatalf("want two runs in the logs, got %d:\n%s", n, all)
	}
	if n := strings.Count(all, "volperm exec: node: uid 1000 -> 1234"); n != 1 {
		t.Errorf("the account was edited %d times over two starts, want once:\n%s", n, all)
	}
	if n := strings.Count(all, "volperm exec: re-owned"); n != 1 {
		t.Errorf("re-owned on %d starts, want only the first:\n%s", n, all)
	}
	homes := strings.Split(strings.TrimSpace(read(t, filepath.Join(dir, "homes"))), "\n")
	if len(homes) != 2 || homes[0] != homes[1] || !strings.HasSuffix(homes[0], " 1234:1234") {
		t.Errorf("the home's inode changed on the restart (or is not 1234's): %q", homes)
	}
}

// Seed 002: the host's docker socket in a container whose image has no
// group with its gid. Without volperm the user is refused; with it the
// user talks to the daemon, and the socket keeps its mode.
func TestContainerDockerSocket(t *testing.T) {
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	vp := volpermBinary(t)
	ping := testenv.PingBinary(t)
	sock := strings.TrimPrefix(d.Host, "unix://")
	var st unix.Stat_t
	if err := unix.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if slices.Contains([]uint32{0, 33, 1000, 2000, 3000, 65534, 70000}, st.Gid) {
		t.Fatalf("the daemon's socket has gid %d, which the test image has a group for: the test needs a gid the image lacks", st.Gid)
	}
	binds := []string{vp + ":/volperm:ro", ping + ":/ping:ro", sock + ":/var/run/docker.sock"}

	out, code := d.Run(t, img, testenv.RunOpts{User: "node", Binds: binds, Cmd: []string{"/ping"}})
	if code == 0 || !strings.Contains(out, "permission denied") {
		t.Fatalf("without volperm: exit %d, %q; want permission denied", code, out)
	}
	out, code = d.Run(t, img, testenv.RunOpts{Binds: binds,
		Cmd: []string{"/volperm", "exec", "--user", "node", "--", "sh", "-c", "/ping && " + report}})
	if code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("with volperm: exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, fmt.Sprintf("new group docker-host (gid %d) for the docker socket", st.Gid)) {
		t.Errorf("volperm did not say which group it made:\n%s", out)
	}
	if got, want := field(t, out, "Groups"), fmt.Sprintf("%d 1000 2000", st.Gid); !sameFields(got, want) {
		t.Errorf("groups %q, want %q", got, want)
	}
	var after unix.Stat_t
	if err := unix.Stat(sock, &after); err != nil {
		t.Fatal(err)
	}
	if after.Mode != st.Mode || after.Uid != st.Uid || after.Gid != st.Gid {
		t.Errorf("the socket changed: mode %o %d:%d -> %o %d:%d", st.Mode, st.Uid, st.Gid, after.Mode, after.Uid, after.Gid)
	}
}

func sameFields(a, b string) bool {
	x, y := strings.Fields(a), strings.Fields(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// The uid and gid of the work dir belong to www-data: node takes them,
// www-data moves aside, and docker run --group-add groups are kept.
func TestContainerTakenIDsAndGroupAdd(t *testing.T) {
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	vp := volpermBinary(t)
	dir := workDir(t, 33, 33)
	out, code := d.Run(t, img, testenv.RunOpts{
		Binds:    []string{vp + ":/volperm:ro", dir + ":/work"},
		GroupAdd: []string{"3000", "4321"},
		Cmd: []string{"/volperm", "exec", "--user", "node", "--match", "/work", "--",
			"sh", "-c", report + "; grep -E '^(node|www-data):' /etc/passwd; touch /work/f"},
	})
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if got := field(t, out, "uid"); got != "33 gid=33 user=node group=www-data" {
		t.Errorf("runs as %q, want uid 33 named node in the existing group www-data", got)
	}
	for _, want := range []string{"node:x:33:33:node:/home/node:/bin/sh", "www-data:x:10000:33:", "uid 33 belonged to www-data, which now has uid 10000"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := field(t, out, "Groups"); !sameFields(got, "33 2000 3000 4321") {
		t.Errorf("groups %q, want 33 (primary), 2000 (node's membership), 3000 and 4321 (--group-add)", got)
	}
	if got := owner(t, filepath.Join(dir, "f")); got != [2]uint32{33, 33} {
		t.Errorf("host sees %v, want 33:33", got)
	}
}

// PID 1 is the command: it gets the SIGTERM of docker stop, and its exit
// code is the container's.
func TestContainerSignalsReachTheCommand(t *testing.T) {
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	vp := volpermBinary(t)
	c := d.Create(t, img, testenv.RunOpts{
		Binds: []string{vp + ":/volperm:ro"},
		Cmd: []string{"/volperm", "exec", "--user", "node", "--",
			"sh", "-c", `trap 'echo got TERM; exit 42' TERM; echo ready pid=$$ comm=$(cat /proc/1/comm); while :; do sleep 0.1; done`},
	})
	c.Start(t)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c.Logs(t), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("the command never started:\n%s", c.Logs(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Kill(t, "TERM")
	if code := c.Wait(t); code != 42 {
		t.Errorf("exit %d, want the command's 42:\n%s", code, c.Logs(t))
	}
	out := c.Logs(t)
	if !strings.Contains(out, "ready pid=1 comm=sh") || !strings.Contains(out, "got TERM") {
		t.Errorf("PID 1 is not the command, or it missed the signal:\n%s", out)
	}
}

// Failures before the command runs exit as docker run does: 125 for
// volperm's own, 126 and 127 for the command; nothing is half edited.
func TestContainerFailures(t *testing.T) {
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	vp := volpermBinary(t)
	suid := filepath.Join(t.TempDir(), "volperm")
	if err := exec.Command("cp", vp, suid).Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(suid, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(suid), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := workDir(t, 1234, 1234)
	// Each case runs volperm under a shell that then prints volperm's exit
	// code and the digests of /etc/passwd and /etc/group.
	const after = `; echo rc=$?; md5sum /etc/passwd /etc/group | cut -c1-32 | tr '\n' ' '; echo`
	baseline, code := d.Run(t, img, testenv.RunOpts{Cmd: []string{"sh", "-c", "true" + after}})
	if code != 0 {
		t.Fatalf("baseline: exit %d: %s", code, baseline)
	}
	digests := strings.TrimSpace(baseline[strings.Index(baseline, "\n")+1:])
	tests := []struct {
		name string
		opts testenv.RunOpts
		cmd  string
		code int
		want string
	}{
		{"missing match", testenv.RunOpts{}, "/volperm exec --user node --match /nope -- true",
			125, "volperm exec: --match /nope: no such file or directory"},
		{"unknown user", testenv.RunOpts{}, "/volperm exec --user ghost -- true",
			125, `volperm exec: user "ghost": no such account in /etc/passwd`},
		{"not root", testenv.RunOpts{User: "1000"}, "/volperm exec --user node -- true",
			125, "volperm exec: started as uid 1000, not root"},
		{"installed setuid", testenv.RunOpts{Binds: []string{suid + ":/suid/volperm:ro"}}, "/suid/volperm exec --user node -- true",
			125, "installed setuid or setgid"},
		{"read-only /etc", testenv.RunOpts{ReadOnly: true, Binds: []string{dir + ":/work"}}, "/volperm exec --user node --match /work -- true",
			125, "volperm exec: editing /etc/group: read-only file system"},
		{"no CAP_SETUID", testenv.RunOpts{CapDrop: []string{"SETUID"}}, "/volperm exec --user node -- true",
			125, "volperm exec: setting uid 1000: operation not permitted: the container lacks CAP_SETUID"},
		{"command not found", testenv.RunOpts{}, "/volperm exec --user node -- no-such-command",
			127, `volperm exec: "no-such-command": executable file not found in $PATH`},
		{"not executable", testenv.RunOpts{}, "/volperm exec --user node -- /etc/passwd",
			126, `volperm exec: "/etc/passwd": permission denied`},
		{"no command", testenv.RunOpts{}, "/volperm exec --user node",
			125, "volperm exec: no command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Binds = append(tc.opts.Binds, vp+":/volperm:ro")
			tc.opts.Cmd = []string{"sh", "-c", tc.cmd + after}
			out, code := d.Run(t, img, tc.opts)
			if code != 0 {
				t.Fatalf("the shell failed: exit %d: %s", code, out)
			}
			if got := field(t, out, "rc"); got != fmt.Sprint(tc.code) {
				t.Errorf("exit %s, want %d:\n%s", got, tc.code, out)
			}
			var msgs []string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "volperm") {
					msgs = append(msgs, l)
				}
			}
			if len(msgs) != 1 || !strings.Contains(msgs[0], tc.want) {
				t.Errorf("messages %q, want one line containing %q", msgs, tc.want)
			}
			if !strings.Contains(out, digests) {
				t.Errorf("/etc/passwd or /etc/group changed: %q, want %q", out, digests)
			}
		})
	}
}

// The exec path carries neither the Docker client, nor compose, nor cobra:
// neither the package nor the slim build.
func TestImportGraph(t *testing.T) {
	testenv.NeedCommand(t, "go")
	forbidden := []string{"github.com/spf13/", "github.com/moby/moby/", "github.com/docker/", "github.com/compose-spec/", "github.com/sirupsen/", "go.opentelemetry.io/"}
	for _, args := range [][]string{
		{"list", "-deps", "github.com/volperm/volperm/internal/entrypoint"},
		{"list", "-deps", "-tags", "execonly", "github.com/volperm/volperm/cmd/volperm"},
	} {
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, "github.com/volperm/volperm/internal/entrypoint") {
			t.Fatalf("go %v does not list the entrypoint:\n%s", args, out)
		}
		for _, dep := range deps {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("go %v: the exec path imports %s", strings.Join(args, " "), dep)
				}
			}
		}
	}
}

// build/Dockerfile makes a FROM scratch image that carries only the
// binary; another image copies it in and uses it as its entrypoint, tuned
// with VOLPERM_* variables at run time.
func TestContainerImageDefinition(t *testing.T) {
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	bin, err := os.ReadFile(volpermBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile("../../build/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	testenv.BuildImage(t, d, "volperm-exec:test", map[string][]byte{"Dockerfile": dockerfile, "volperm": bin})
	testenv.BuildImage(t, d, "volperm-exec-user:test", map[string][]byte{"Dockerfile": []byte(
		"FROM volperm-exec:test AS volperm\n" +
			"FROM " + img + "\n" +
			"COPY --from=volperm /volperm /usr/local/bin/volperm\n" +
			`ENTRYPOINT ["volperm", "exec", "--"]` + "\n")})
	dir := workDir(t, 1234, 1234)
	out, code := d.Run(t, "volperm-exec-user:test", testenv.RunOpts{
		Binds: []string{dir + ":/work"},
		Env:   []string{"VOLPERM_USER=node", "VOLPERM_MATCH=/work"},
		Cmd:   []string{"sh", "-c", report},
	})
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if got := field(t, out, "uid"); got != "1234 gid=1234 user=node group=node" {
		t.Errorf("runs as %q", got)
	}
	inspect, err := d.Client.ImageInspect(context.Background(), "volperm-exec:test")
	if err != nil {
		t.Fatal(err)
	}
	if len(inspect.RootFS.Layers) != 1 {
		t.Errorf("the scratch image has %d layers, want the binary's one", len(inspect.RootFS.Layers))
	}
}

// Under a userns-remap daemon the work dir's host owner must be inside the
// container's range: host 201234 is container 1234 and works; host 1234
// shows as 65534 and is refused with the reason.
func TestContainerRemapped(t *testing.T) {
	testenv.NeedRoot(t)
	d := testenv.RemapDaemon(t, testenv.Layout{User: "vpexec", SubUID: []string{"vpexec:200000:65536"}, SubGID: []string{"vpexec:200000:65536"}})
	img := testenv.Image(t, d)
	vp := volpermBinary(t)

	dir := workDir(t, 201234, 201234)
	// The default daemon's socket: its host group is outside the range.
	sock := strings.TrimPrefix(testenv.NeedDocker(t).Host, "unix://")
	out, code := d.Run(t, img, testenv.RunOpts{
		Binds: []string{vp + ":/volperm:ro", dir + ":/work", sock + ":/var/run/docker.sock"},
		Cmd:   []string{"/volperm", "exec", "--user", "node", "--match", "/work", "--", "sh", "-c", report + "; touch /work/f"},
	})
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if got := field(t, out, "uid"); got != "1234 gid=1234 user=node group=node" {
		t.Errorf("runs as %q", got)
	}
	if got := owner(t, filepath.Join(dir, "f")); got != [2]uint32{201234, 201234} {
		t.Errorf("host sees %v, want 201234:201234", got)
	}
	if want := "volperm exec: warning: /var/run/docker.sock shows as gid 65534: its host group is outside this container's user namespace"; !strings.Contains(out, want) {
		t.Errorf("no warning about the unreachable socket:\n%s", out)
	}
	if strings.Contains(out, "joins group") || strings.Contains(field(t, out, "Groups"), "65534") {
		t.Errorf("joined the overflow group:\n%s", out)
	}

	outside := workDir(t, 1234, 1234)
	out, code = d.Run(t, img, testenv.RunOpts{
		Binds: []string{vp + ":/volperm:ro", outside + ":/work"},
		Cmd:   []string{"/volperm", "exec", "--user", "node", "--match", "/work", "--", "true"},
	})
	want := "volperm exec: --match /work shows as uid 65534: its host owner is outside this container's user namespace (container uids 0-65535 are host uids 200000-265535)"
	if code != 125 || !strings.Contains(out, want) {
		t.Errorf("exit %d, %q; want 125 and %q", code, out, want)
	}
}
