package cli

import (
	"context"
	"time"

	"encoding/json"
	"fmt"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/volperm/volperm/internal/diag"
	"github.com/volperm/volperm/internal/testenv"
)

type doctorJSON struct {
	Workloads []jsonWorkload `json:"workloads"`
	Findings  []diag.Finding `json:"findings"`
}

// doctor runs `volperm doctor -o json` in dir against dockerHost.
func doctor(t *testing.T, dockerHost, dir string, args ...string) (doctorJSON, int) {
	t.Helper()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	stdout, stderr, code := runCLI(t, dockerHost, append([]string{"doctor", "-o", "json"}, args...)...)
	if code != ExitOK && code != ExitFindings {
		t.Fatalf("volperm doctor: exit %d: %s", code, stderr)
	}
	var r doctorJSON
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("doctor output %q: %v", stdout, err)
	}
	return r, code
}

func findingsOf(r doctorJSON, id string) []diag.Finding {
	var out []diag.Finding
	for _, f := range r.Findings {
		if f.ID == id {
			out = append(out, f)
		}
	}
	return out
}

// one returns the single finding with that id, failing otherwise.
func one(t *testing.T, r doctorJSON, id string) diag.Finding {
	t.Helper()
	fs := findingsOf(r, id)
	if len(fs) != 1 {
		t.Fatalf("want one %s finding, got %d: %+v", id, len(fs), r.Findings)
	}
	return fs[0]
}

func none(t *testing.T, r doctorJSON, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if fs := findingsOf(r, id); len(fs) > 0 {
			t.Errorf("unexpected %s: %+v", id, fs)
		}
	}
}

// worldOpen matches the fixes volperm must never suggest.
var worldOpen = regexp.MustCompile(`chmod\s+(-\S+\s+)*(0?[0-7]?(777|666)|[a-z]*o[a-z]*\+[rwx]*w|a\+[rwx]*w)\b`)

// applyShell runs a finding's first shell fix, as a user would paste it.
func applyShell(t *testing.T, dir string, f diag.Finding) {
	t.Helper()
	for _, fix := range f.Fix {
		if fix.Shell == "" {
			continue
		}
		if worldOpen.MatchString(fix.Shell) {
			t.Fatalf("%s suggests %q", f.ID, fix.Shell)
		}
		cmd := exec.Command("sh", "-c", fix.Shell)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("fix %q: %v\n%s", fix.Shell, err, out)
		}
		return
	}
	t.Fatalf("%s has no shell fix: %+v", f.ID, f.Fix)
}

// project writes a compose.yaml into a fresh, world-traversable directory.
func project(t *testing.T, yaml string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vp-project-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mkdirOwned(t *testing.T, path string, uid, gid int, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestDoctorSeed000 is seed 000: a service running as uid 1000 logs to a
// bind mount that does not exist; Docker creates it root:root 0755.
func TestDoctorSeed000(t *testing.T) {
	testenv.NeedRoot(t)
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	dir := project(t, fmt.Sprintf("services:\n  app:\n    image: %s\n    user: node\n    volumes:\n      - ./logs:/home/node/app/logs\n", img))
	logs := filepath.Join(dir, "logs")

	r, code := doctor(t, d.Host, dir)
	f := one(t, r, "VP101")
	if f.Severity != diag.Error || code != ExitFindings || f.Path != logs || !strings.Contains(f.Message, "EACCES") {
		t.Fatalf("VP101 = %+v, exit %d", f, code)
	}
	if w := r.Workloads[0]; w.User == nil || w.User.UID != 1000 || w.UserSpec != "node" {
		t.Fatalf("workload user %+v", w)
	}

	out, rc := d.Run(t, img, testenv.RunOpts{User: "node", Binds: []string{logs + ":/home/node/app/logs"}, Cmd: []string{"touch", "/home/node/app/logs/app.log"}})
	if rc == 0 || !strings.Contains(out, "Permission denied") {
		t.Fatalf("the real container wrote the log (exit %d): %s", rc, out)
	}
	if st, err := os.Stat(logs); err != nil || st.Mode().Perm() != 0o755 || ownerUID(st) != 0 {
		t.Fatalf("docker did not create %s as root 0755: %v %v", logs, st, err)
	}

	applyShell(t, dir, f)
	r, code = doctor(t, d.Host, dir)
	none(t, r, "VP101", "VP102", "VP103", "VP104")
	if code != ExitOK {
		t.Errorf("doctor after the fix: exit %d: %+v", code, r.Findings)
	}
	if out, rc := d.Run(t, img, testenv.RunOpts{User: "node", Binds: []string{logs + ":/home/node/app/logs"}, Cmd: []string{"touch", "/home/node/app/logs/app.log"}}); rc != 0 {
		t.Fatalf("after the fix the container still fails: %s", out)
	}
}

func ownerUID(fi os.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }

// writeAs runs `touch target/probe` in a container and reports success.
func writeAs(t *testing.T, d *testenv.Daemon, img, user, bind string, groupAdd ...string) (string, bool) {
	t.Helper()
	target := strings.Split(bind, ":")[1]
	out, rc := d.Run(t, img, testenv.RunOpts{User: user, GroupAdd: groupAdd, Binds: []string{bind}, Cmd: []string{"touch", target + "/probe"}})
	return out, rc == 0
}

// TestDoctorBindAccess proves VP102, VP103 and VP104 both ways with real
// containers on the plain daemon, and the correct setups stay silent.
func TestDoctorBindAccess(t *testing.T) {
	testenv.NeedRoot(t)
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	compose := func(src, opts string) string {
		return fmt.Sprintf("services:\n  app:\n    image: %s\n    user: \"1000\"\n    volumes:\n      - %s:/data%s\n", img, src, opts)
	}

	t.Run("VP102 root-owned dir, then fixed by the finding's chown", func(t *testing.T) {
		dir := project(t, compose("./data", ""))
		data := filepath.Join(dir, "data")
		mkdirOwned(t, data, 0, 0, 0o755)
		r, _ := doctor(t, d.Host, dir)
		f := one(t, r, "VP102")
		none(t, r, "VP101", "VP103", "VP104")
		if !strings.HasPrefix(f.Fix[0].Shell, "chown 1000:1000 ") {
			t.Errorf("first fix %q, want the owner fix for a root-owned directory", f.Fix[0].Shell)
		}
		if out, ok := writeAs(t, d, img, "1000", data+":/data"); ok || !strings.Contains(out, "Permission denied") {
			t.Fatalf("container wrote anyway: %s", out)
		}
		applyShell(t, dir, f)
		r, _ = doctor(t, d.Host, dir)
		none(t, r, "VP102", "VP103")
		if out, ok := writeAs(t, d, img, "1000", data+":/data"); !ok {
			t.Fatalf("after the fix: %s", out)
		}
	})

	t.Run("VP102 host user's dir gets an ACL, owner kept", func(t *testing.T) {
		dir := project(t, compose("./data", ""))
		data := filepath.Join(dir, "data")
		hostUser := testenv.EnsureUser(t, "vphostuser")
		mkdirOwned(t, data, int(hostUser), int(hostUser), 0o755)
		r, _ := doctor(t, d.Host, dir)
		f := one(t, r, "VP102")
		if !strings.HasPrefix(f.Fix[0].Shell, "setfacl -m u:1000:rwX,d:u:1000:rwX ") {
			t.Fatalf("first fix %q, want an ACL grant that keeps the host user's ownership", f.Fix[0].Shell)
		}
		applyShell(t, dir, f)
		r, _ = doctor(t, d.Host, dir)
		none(t, r, "VP102")
		if out, ok := writeAs(t, d, img, "1000", data+":/data"); !ok {
			t.Fatalf("after the ACL fix: %s", out)
		}
		if st, _ := os.Stat(data); ownerUID(st) != int(hostUser) {
			t.Errorf("the ACL fix changed the owner")
		}
	})

	t.Run("no finding: root-owned 0755 with an ACL granting the uid", func(t *testing.T) {
		dir := project(t, compose("./data", ""))
		data := filepath.Join(dir, "data")
		mkdirOwned(t, data, 0, 0, 0o755)
		if out, err := exec.Command("setfacl", "-m", "u:1000:rwx", data).CombinedOutput(); err != nil {
			t.Fatalf("setfacl: %v %s", err, out)
		}
		r, code := doctor(t, d.Host, dir)
		none(t, r, "VP101", "VP102", "VP103", "VP104")
		if code != ExitOK {
			t.Errorf("exit %d", code)
		}
		if out, ok := writeAs(t, d, img, "1000", data+":/data"); !ok {
			t.Fatalf("container refused although doctor is silent: %s", out)
		}
	})

	t.Run("no finding: dir owned by the mapped uid", func(t *testing.T) {
		dir := project(t, compose("./data", ""))
		data := filepath.Join(dir, "data")
		mkdirOwned(t, data, 1000, 0, 0o755)
		r, _ := doctor(t, d.Host, dir)
		none(t, r, "VP101", "VP102", "VP103", "VP104")
		if out, ok := writeAs(t, d, img, "1000", data+":/data"); !ok {
			t.Fatalf("container refused although doctor is silent: %s", out)
		}
	})

	t.Run("VP103 unreadable read-only mount; silent when readable", func(t *testing.T) {
		dir := project(t, compose("./conf", ":ro"))
		conf := filepath.Join(dir, "conf")
		mkdirOwned(t, conf, 0, 0, 0o700)
		r, _ := doctor(t, d.Host, dir)
		f := one(t, r, "VP103")
		none(t, r, "VP102")
		out, rc := d.Run(t, img, testenv.RunOpts{User: "1000", Binds: []string{conf + ":/data:ro"}, Cmd: []string{"ls", "/data"}})
		if rc == 0 || !strings.Contains(out, "Permission denied") {
			t.Fatalf("container listed it (exit %d): %s", rc, out)
		}
		applyShell(t, dir, f)
		r, _ = doctor(t, d.Host, dir)
		none(t, r, "VP103", "VP102")
		if out, rc := d.Run(t, img, testenv.RunOpts{User: "1000", Binds: []string{conf + ":/data:ro"}, Cmd: []string{"ls", "/data"}}); rc != 0 {
			t.Fatalf("after the fix: %s", out)
		}
	})

	t.Run("VP104 world-writable works but is flagged; fix keeps it working", func(t *testing.T) {
		dir := project(t, compose("./data", ""))
		data := filepath.Join(dir, "data")
		mkdirOwned(t, data, 0, 0, 0o777)
		r, code := doctor(t, d.Host, dir)
		f := one(t, r, "VP104")
		none(t, r, "VP102")
		if f.Severity != diag.Warning || code != ExitOK {
			t.Errorf("VP104 %v, exit %d: a warning must not fail the default --fail-on error", f.Severity, code)
		}
		if _, code := doctor(t, d.Host, dir, "--fail-on", "warning"); code != ExitFindings {
			t.Errorf("--fail-on warning: exit %d", code)
		}
		if out, ok := writeAs(t, d, img, "1000", data+":/data"); !ok {
			t.Fatalf("0777 refused: %s", out)
		}
		applyShell(t, dir, f)
		r, _ = doctor(t, d.Host, dir)
		none(t, r, "VP104", "VP102")
		if out, ok := writeAs(t, d, img, "1000", data+":/data"); !ok {
			t.Fatalf("after the fix: %s", out)
		}
	})
}

// TestDoctorDockerSocket is seed 002 (DooD): the CI agent runs as a
// non-root user, the socket's gid has no name inside, permission denied;
// group_add with the number fixes it.
func TestDoctorDockerSocket(t *testing.T) {
	testenv.NeedRoot(t)
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	ping := testenv.PingBinary(t)
	sock := "/var/run/docker.sock"
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("no docker socket at %s: %v", sock, err)
	}
	gid := st.Sys().(*syscall.Stat_t).Gid
	binds := []string{sock + ":/var/run/docker.sock", ping + ":/ping:ro"}
	svc := func(extra string) string {
		return fmt.Sprintf("services:\n  agent:\n    image: %s\n    user: \"1000\"\n%s    volumes:\n      - %s:/var/run/docker.sock\n", img, extra, sock)
	}

	dir := project(t, svc(""))
	r, _ := doctor(t, "unix://"+sock, dir)
	if f := one(t, r, "VP201"); f.Severity != diag.Warning {
		t.Errorf("VP201 severity %v", f.Severity)
	}
	f := one(t, r, "VP202")
	want := fmt.Sprintf("group_add:\n      - \"%d\"", gid)
	if len(f.Fix) == 0 || !strings.Contains(f.Fix[0].YAML, want) {
		t.Fatalf("VP202 fix %+v, want YAML with %q", f.Fix, want)
	}
	out, rc := d.Run(t, img, testenv.RunOpts{User: "1000", Binds: binds, Cmd: []string{"/ping"}})
	if rc == 0 || !strings.Contains(out, "permission denied") {
		t.Fatalf("uid 1000 reached the daemon without the group (exit %d): %s", rc, out)
	}

	// The fix, as the finding gives it: the numeric gid in group_add.
	fixed := project(t, svc(fmt.Sprintf("    group_add:\n      - \"%d\"\n", gid)))
	r, _ = doctor(t, "unix://"+sock, fixed)
	none(t, r, "VP202")
	out, rc = d.Run(t, img, testenv.RunOpts{User: "1000", GroupAdd: []string{fmt.Sprint(gid)}, Binds: binds, Cmd: []string{"/ping"}})
	if rc != 0 || !strings.Contains(out, "200 OK") {
		t.Fatalf("with group_add %d the agent still cannot talk to the daemon (exit %d): %s", gid, rc, out)
	}

	// VP203: a chmod 666 socket lets any host user in.
	r, _ = doctor(t, "unix://"+sock, dir)
	none(t, r, "VP203")
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(sock, st.Mode().Perm()) })
	nobody := exec.Command(ping, sock)
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4321, Gid: 4321}}
	if out, err := nobody.CombinedOutput(); err != nil {
		t.Fatalf("with mode 0666 an unrelated host user could not connect: %v %s", err, out)
	}
	r, _ = doctor(t, "unix://"+sock, dir)
	f = one(t, r, "VP203")
	applyShell(t, dir, f)
	nobody = exec.Command(ping, sock)
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4321, Gid: 4321}}
	if out, err := nobody.CombinedOutput(); err == nil {
		t.Fatalf("after the fix an unrelated host user still connects: %s", out)
	}
	r, _ = doctor(t, "unix://"+sock, dir)
	none(t, r, "VP203")
}

// TestDoctorRemapped proves VP105 and VP204 on a daemon with
// --userns-remap, and VP301 on the plain one (container root is host
// root only without remapping).
func TestDoctorRemapped(t *testing.T) {
	testenv.NeedRoot(t)
	plain := testenv.NeedDocker(t)
	testenv.EnsureUser(t, remapUser)
	d := testenv.RemapDaemon(t, testenv.Layout{User: remapUser, SubUID: []string{"vpmap:100000:65536"}, SubGID: []string{"vpmap:100000:65536"}})
	img := testenv.Image(t, d)

	t.Run("VP105 host-owned dir is nobody inside", func(t *testing.T) {
		dir := project(t, fmt.Sprintf("services:\n  app:\n    image: %s\n    volumes:\n      - ./data:/data\n", img))
		data := filepath.Join(dir, "data")
		mkdirOwned(t, data, 1000, 1000, 0o755)
		r, _ := doctor(t, d.Host, dir)
		f := one(t, r, "VP105")
		none(t, r, "VP102", "VP103")
		if f.Severity != diag.Error || !strings.Contains(f.Message, "65534:65534") {
			t.Errorf("VP105 = %+v", f)
		}
		if out, ok := writeAs(t, d, img, "0", data+":/data"); ok || !strings.Contains(out, "Permission denied") {
			t.Fatalf("remapped root wrote into a host-owned 0755 dir: %s", out)
		}
		seen := d.SeenAs(t, img, dir)
		if o := seen["data"]; o.UID != 65534 || o.GID != 65534 {
			t.Errorf("the container sees %v, want 65534:65534", o)
		}
		// 0777 works: only the other bits apply.
		if err := os.Chmod(data, 0o777); err != nil {
			t.Fatal(err)
		}
		r, _ = doctor(t, d.Host, dir)
		if f := one(t, r, "VP105"); f.Severity != diag.Warning {
			t.Errorf("0777: VP105 severity %v, want warning", f.Severity)
		}
		if out, ok := writeAs(t, d, img, "0", data+":/data"); !ok {
			t.Fatalf("0777 refused: %s", out)
		}
		if err := os.Chmod(data, 0o755); err != nil {
			t.Fatal(err)
		}
		applyShell(t, dir, f)
		r, _ = doctor(t, d.Host, dir)
		none(t, r, "VP105", "VP102", "VP103")
		if st, _ := os.Stat(data); ownerUID(st) != 100000 {
			t.Errorf("the fix made owner %d, want the mapped root 100000", ownerUID(st))
		}
		if out, ok := writeAs(t, d, img, "0", data+":/data"); !ok {
			t.Fatalf("after the fix: %s", out)
		}
	})

	t.Run("VP101 under remap: created as the remapped root", func(t *testing.T) {
		dir := project(t, fmt.Sprintf("services:\n  app:\n    image: %s\n    user: \"33:33\"\n    volumes:\n      - ./new:/data\n", img))
		r, _ := doctor(t, d.Host, dir)
		f := one(t, r, "VP101")
		if !strings.Contains(f.Message, "owned by host 100000:100000") || !strings.Contains(f.Fix[0].Shell, "-o 100033 -g 100033") {
			t.Fatalf("VP101 under remap: %+v", f)
		}
		if out, ok := writeAs(t, d, img, "33:33", filepath.Join(dir, "new")+":/data"); ok {
			t.Fatalf("www-data wrote into the daemon-created dir: %s", out)
		}
		if st, err := os.Stat(filepath.Join(dir, "new")); err != nil || ownerUID(st) != 100000 {
			t.Fatalf("the daemon did not create it as 100000: %v", err)
		}
		applyShell(t, dir, f)
		if out, ok := writeAs(t, d, img, "33:33", filepath.Join(dir, "new")+":/data"); !ok {
			t.Fatalf("after the fix: %s", out)
		}
	})

	t.Run("VP204 socket under remap needs userns_mode host", func(t *testing.T) {
		ping := testenv.PingBinary(t)
		sock := "/var/run/docker.sock"
		dir := project(t, fmt.Sprintf("services:\n  agent:\n    image: %s\n    volumes:\n      - %s:/var/run/docker.sock\n", img, sock))
		r, _ := doctor(t, d.Host, dir)
		one(t, r, "VP204")
		binds := []string{sock + ":/var/run/docker.sock", ping + ":/ping:ro"}
		if out, rc := d.Run(t, img, testenv.RunOpts{Binds: binds, Cmd: []string{"/ping"}}); rc == 0 {
			t.Fatalf("remapped root reached the socket: %s", out)
		}
		fixed := project(t, fmt.Sprintf("services:\n  agent:\n    image: %s\n    userns_mode: host\n    volumes:\n      - %s:/var/run/docker.sock\n", img, sock))
		r, _ = doctor(t, d.Host, fixed)
		none(t, r, "VP204")
		if out, rc := d.Run(t, img, testenv.RunOpts{UsernsMode: "host", Binds: binds, Cmd: []string{"/ping"}}); rc != 0 {
			t.Fatalf("with userns_mode host: %s", out)
		}
	})

	t.Run("VP301 container root deletes host files only without remap", func(t *testing.T) {
		victimDir, err := os.MkdirTemp("/usr/local/lib", "vp-victim-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(victimDir) })
		if err := os.WriteFile(filepath.Join(victimDir, "touch.bak"), []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
		yaml := fmt.Sprintf("services:\n  app:\n    image: %s\n    volumes:\n      - %s:/host\n", testenv.Image(t, plain), victimDir)
		dir := project(t, yaml)
		r, _ := doctor(t, plain.Host, dir)
		one(t, r, "VP301")
		r, _ = doctor(t, d.Host, dir)
		none(t, r, "VP301")
		if out, rc := d.Run(t, img, testenv.RunOpts{Binds: []string{victimDir + ":/host"}, Cmd: []string{"rm", "-f", "/host/touch.bak"}}); rc == 0 {
			t.Fatalf("remapped root deleted a host file: %s", out)
		}
		if out, rc := plain.Run(t, testenv.Image(t, plain), testenv.RunOpts{Binds: []string{victimDir + ":/host:ro"}, Cmd: []string{"rm", "-f", "/host/touch.bak"}}); rc == 0 {
			t.Fatalf("read-only mount did not protect the file: %s", out)
		}
		if out, rc := plain.Run(t, testenv.Image(t, plain), testenv.RunOpts{Binds: []string{victimDir + ":/host"}, Cmd: []string{"rm", "-f", "/host/touch.bak"}}); rc != 0 {
			t.Fatalf("container root could not delete the host file: %s", out)
		}
		if _, err := os.Stat(filepath.Join(victimDir, "touch.bak")); err == nil {
			t.Fatal("the host file survived container root's rm")
		}
	})
}

// TestDoctorUsers proves VP401 and VP403.
func TestDoctorUsers(t *testing.T) {
	testenv.NeedRoot(t)
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)

	dir := project(t, fmt.Sprintf("services:\n  app:\n    image: %s\n    user: nosuch\n  grp:\n    image: %s\n    user: node\n    group_add: [docker]\n", img, img))
	r, _ := doctor(t, d.Host, dir)
	fs := findingsOf(r, "VP401")
	if len(fs) != 2 {
		t.Fatalf("VP401 findings %+v", fs)
	}
	for _, f := range fs {
		var opts testenv.RunOpts
		var want string
		switch f.Workload {
		case "app":
			opts, want = testenv.RunOpts{User: "nosuch", Cmd: []string{"true"}}, "unable to find user nosuch: no matching entries in passwd file"
		case "grp":
			opts, want = testenv.RunOpts{User: "node", GroupAdd: []string{"docker"}, Cmd: []string{"true"}}, "Unable to find group docker: no matching entries in group file"
		}
		if !strings.Contains(f.Message, want) {
			t.Errorf("%s: message %q lacks the daemon's %q", f.Workload, f.Message, want)
		}
		out, rc := d.Run(t, img, opts)
		if rc == 0 || !strings.Contains(out, want) {
			t.Errorf("%s: the daemon said %q (exit %d), doctor predicted %q", f.Workload, out, rc, want)
		}
	}

	t.Setenv("VPUID", "")
	os.Unsetenv("VPUID")
	os.Unsetenv("VPGID")
	dir = project(t, fmt.Sprintf("services:\n  app:\n    image: %s\n    user: \"${VPUID}:${VPGID}\"\n", img))
	r, _ = doctor(t, d.Host, dir)
	f := one(t, r, "VP403")
	if !strings.Contains(f.Message, `became ":"`) || !strings.Contains(f.Message, "VPUID and VPGID are not set") {
		t.Errorf("VP403 message %q", f.Message)
	}
	if out, _ := d.Run(t, img, testenv.RunOpts{User: ":", Cmd: []string{"id", "-u"}}); strings.TrimSpace(out) != "0" {
		t.Errorf("user \":\" ran as %q, the finding says root", out)
	}
	t.Setenv("VPUID", "1000")
	t.Setenv("VPGID", "1000")
	r, _ = doctor(t, d.Host, dir)
	none(t, r, "VP403")
	if w := r.Workloads[0]; w.User == nil || w.User.UID != 1000 {
		t.Errorf("with the variables exported the user is %+v", w.User)
	}
}

// TestDoctorSharedPath is seed 004's shared directory: two services with
// different uids write one bind source.
func TestDoctorSharedPath(t *testing.T) {
	testenv.NeedRoot(t)
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	dir := project(t, fmt.Sprintf("services:\n  web:\n    image: %s\n    user: \"1000:1000\"\n    volumes: [\"./run:/run/app\"]\n  worker:\n    image: %s\n    user: \"33:33\"\n    volumes: [\"./run:/run/app\"]\n", img, img))
	run := filepath.Join(dir, "run")
	mkdirOwned(t, run, 1000, 1000, 0o755)
	r, _ := doctor(t, d.Host, dir)
	f := one(t, r, "VP402")
	// Today: worker cannot write at all (VP102) and cannot write web's files.
	if _, ok := writeAs(t, d, img, "1000:1000", run+":/run/app"); !ok {
		t.Fatal("web could not write its own dir")
	}
	out, rc := d.Run(t, img, testenv.RunOpts{User: "33:33", Binds: []string{run + ":/run/app"}, Cmd: []string{"sh", "-c", "echo x >> /run/app/probe"}})
	if rc == 0 {
		t.Fatalf("worker appended to web's file: %s", out)
	}
	applyShell(t, dir, f)
	var grp []string
	for _, fix := range f.Fix {
		if fix.YAML != "" {
			for _, line := range strings.Split(fix.YAML, "\n") {
				if s := strings.TrimSpace(line); strings.HasPrefix(s, "- ") {
					grp = append(grp, strings.Trim(strings.TrimPrefix(s, "- "), `"`))
				}
			}
		}
	}
	if len(grp) != 1 {
		t.Fatalf("VP402 fix gives no group_add: %+v", f.Fix)
	}
	os.Remove(filepath.Join(run, "probe"))
	// A file web creates after the fix is writable by worker.
	if out, rc := d.Run(t, img, testenv.RunOpts{User: "1000:1000", Binds: []string{run + ":/run/app"}, Cmd: []string{"touch", "/run/app/shared"}}); rc != 0 {
		t.Fatalf("web after the fix: %s", out)
	}
	if out, rc := d.Run(t, img, testenv.RunOpts{User: "33:33", GroupAdd: grp, Binds: []string{run + ":/run/app"}, Cmd: []string{"sh", "-c", "echo x >> /run/app/shared && touch /run/app/own"}}); rc != 0 {
		t.Fatalf("worker with group_add %v after the fix: %s", grp, out)
	}
}

// TestDoctorBadInput: clear one-line errors, exit 3, no stack traces.
func TestDoctorBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
		args             []string
	}{
		{"invalid YAML", "services:\n  app: [\n", "loading compose project", nil},
		{"unknown service key", "services:\n  app:\n    image: x\n    usr: root\n", "services.app.usr: unknown key", nil},
		{"missing -f file", "", "nosuch.yaml", []string{"-f", "nosuch.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.yaml != "" {
				os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(tc.yaml), 0o644)
			}
			wd, _ := os.Getwd()
			os.Chdir(dir)
			defer os.Chdir(wd)
			stdout, stderr, code := runCLI(t, "unix:///nonexistent.sock", append([]string{"doctor"}, tc.args...)...)
			if code != ExitIncomplete || stdout != "" {
				t.Fatalf("exit %d, stdout %q", code, stdout)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 || !strings.Contains(strings.ToLower(lines[0]), strings.ToLower(tc.want)) || strings.Contains(stderr, "goroutine") {
				t.Fatalf("stderr %q, want one line with %q", stderr, tc.want)
			}
		})
	}

	t.Run("unreachable daemon: static analysis with notes", func(t *testing.T) {
		dir := project(t, "services:\n  app:\n    image: nosuch:1\n    user: \"1000:1000\"\n    volumes: [\"./logs:/logs\"]\n")
		wd, _ := os.Getwd()
		os.Chdir(dir)
		defer os.Chdir(wd)
		stdout, stderr, code := runCLI(t, "unix:///nonexistent.sock", "doctor")
		if code != ExitFindings || !strings.Contains(stdout, "VP101") || !strings.Contains(stderr, "not reachable") {
			t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
		}
	})

	t.Run("image not present", func(t *testing.T) {
		testenv.NeedRoot(t)
		d := testenv.NeedDocker(t)
		dir := project(t, "services:\n  app:\n    image: volperm-absent:1\n    volumes: [\"./logs:/logs\"]\n")
		r, _ := doctor(t, d.Host, dir)
		if len(r.Workloads) != 1 || len(r.Workloads[0].Unknown) == 0 || !strings.Contains(r.Workloads[0].Unknown[0], "volperm-absent:1 is not present") {
			t.Fatalf("workloads %+v", r.Workloads)
		}
	})

	t.Run("container not found", func(t *testing.T) {
		testenv.NeedRoot(t)
		d := testenv.NeedDocker(t)
		_, stderr, code := runCLI(t, d.Host, "doctor", "--container", "volperm-no-such-container")
		if code != ExitIncomplete || !strings.Contains(stderr, "volperm-no-such-container") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Fatalf("exit %d: %q", code, stderr)
		}
	})
}

// createContainer creates (and, with start, starts) a container that runs
// until the test ends.
func createContainer(t *testing.T, d *testenv.Daemon, img, user string, binds []string, start bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := fmt.Sprintf("vp-doctor-%d", time.Now().UnixNano())
	_, err := d.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       name,
		Config:     &container.Config{Image: img, User: user, Cmd: []string{"sleep", "300"}},
		HostConfig: &container.HostConfig{NetworkMode: "none", Binds: binds},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = d.Client.ContainerRemove(context.Background(), name, client.ContainerRemoveOptions{Force: true})
	})
	if start {
		if _, err := d.Client.ContainerStart(ctx, name, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// TestDoctorContainers reads created and running containers through the
// Engine API: the user from the container's Config.User and its own
// /etc/passwd, the mounts, and for a running container its real id maps.
func TestDoctorContainers(t *testing.T) {
	testenv.NeedRoot(t)
	plain := testenv.NeedDocker(t)
	img := testenv.Image(t, plain)
	data, err := os.MkdirTemp("", "vp-ctr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	mkdirOwned(t, data, 0, 0, 0o755)

	created := createContainer(t, plain, img, "node", []string{data + ":/data"}, false)
	r, code := doctor(t, plain.Host, t.TempDir(), "--container", created)
	if code != ExitFindings || len(r.Workloads) != 1 {
		t.Fatalf("exit %d, workloads %+v", code, r.Workloads)
	}
	if w := r.Workloads[0]; w.User == nil || w.User.UID != 1000 || w.UserSpec != "node" || w.Name != created {
		t.Fatalf("workload %+v", w)
	}
	if f := one(t, r, "VP102"); f.Mount != "/data" || f.Path != data {
		t.Fatalf("VP102 %+v", f)
	}

	testenv.EnsureUser(t, remapUser)
	d := testenv.RemapDaemon(t, testenv.Layout{User: remapUser, SubUID: []string{"vpmap:100000:65536"}, SubGID: []string{"vpmap:100000:65536"}})
	rimg := testenv.Image(t, d)
	hostOwned, err := os.MkdirTemp("", "vp-ctr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(hostOwned) })
	mkdirOwned(t, hostOwned, 1000, 1000, 0o755)
	running := createContainer(t, d, rimg, "", []string{hostOwned + ":/data"}, true)
	r, _ = doctor(t, d.Host, t.TempDir(), "--all-containers")
	var found bool
	for _, w := range r.Workloads {
		if w.Name == running {
			found = true
			if !w.Remapped || w.HostUser == nil || w.HostUser.UID != 100000 {
				t.Errorf("running remapped container %+v", w)
			}
		}
	}
	if !found {
		t.Fatalf("--all-containers did not list %s: %+v", running, r.Workloads)
	}
	if f := one(t, r, "VP105"); f.Workload != running {
		t.Errorf("VP105 for %s, want %s", f.Workload, running)
	}
}

// TestDoctorFormats checks the text and SARIF reports on a real project.
func TestDoctorFormats(t *testing.T) {
	testenv.NeedRoot(t)
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	dir := project(t, fmt.Sprintf("# seed 000\nservices:\n  app:\n    image: %s\n    user: node\n    volumes:\n      - ./logs:/home/node/app/logs\n", img))
	wd, _ := os.Getwd()
	os.Chdir(dir)
	defer os.Chdir(wd)

	stdout, _, code := runCLI(t, d.Host, "doctor")
	for _, want := range []string{
		"app (compose.yaml:3): runs as uid 1000 node gids [1000 2000] (same ids on the host: no userns remap)",
		"error   VP101 " + filepath.Join(dir, "logs") + " -> /home/node/app/logs",
		"install -d -o 1000 -g 1000 -m 0755 " + filepath.Join(dir, "logs"),
		"1 error(s), 0 warning(s), 0 info",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, stdout)
		}
	}
	if code != ExitFindings || strings.Contains(stdout, "\x1b[") {
		t.Errorf("exit %d; colour codes in a non-terminal: %v", code, strings.Contains(stdout, "\x1b["))
	}

	stdout, _, _ = runCLI(t, d.Host, "doctor", "--format", "sarif")
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Level     string `json:"level"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(stdout), &log); err != nil {
		t.Fatalf("SARIF: %v\n%s", err, stdout)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 || log.Runs[0].Tool.Driver.Name != "volperm" || len(log.Runs[0].Tool.Driver.Rules) != len(diag.Rules) {
		t.Fatalf("SARIF envelope %+v", log)
	}
	res := log.Runs[0].Results
	if len(res) != 1 || res[0].RuleID != "VP101" || res[0].Level != "error" || len(res[0].Locations) != 1 {
		t.Fatalf("SARIF results %+v", res)
	}
	// The location is the volume entry's line in the compose file.
	if loc := res[0].Locations[0].PhysicalLocation; loc.ArtifactLocation.URI != "compose.yaml" || loc.Region.StartLine != 7 {
		t.Errorf("SARIF location %+v, want compose.yaml:7", loc)
	}
}

// TestDoctorRemapSetup proves VP302, VP303 and VP304 against the real
// dockerd and kernel.
func TestDoctorRemapSetup(t *testing.T) {
	testenv.NeedRoot(t)
	plain := testenv.NeedDocker(t)
	testenv.EnsureUser(t, remapUser)
	cfgDir := t.TempDir()
	cfg := filepath.Join(cfgDir, "daemon.json")

	t.Run("VP302 no subuid line: the daemon's own words", func(t *testing.T) {
		if err := os.WriteFile(cfg, []byte(`{"userns-remap": "vpmap"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		out := testenv.StartDaemonExpectFailure(t, testenv.Layout{SubUID: []string{"other:100000:65536"}, SubGID: []string{"vpmap:100000:65536"}}, "--config-file", cfg)
		r, code := doctor(t, plain.Host, t.TempDir(), "--host", "--daemon-config", cfg)
		f := one(t, r, "VP302")
		quoted := regexp.MustCompile(`printing "(.*)"\.$`).FindStringSubmatch(f.Message)
		if quoted == nil || code != ExitFindings {
			t.Fatalf("VP302 %q, exit %d", f.Message, code)
		}
		msg, _ := strconv.Unquote(`"` + quoted[1] + `"`)
		if !strings.Contains(out, msg) {
			t.Fatalf("doctor quotes %q, dockerd printed:\n%s", msg, out)
		}
		if !strings.Contains(f.Fix[0].Shell, "vpmap:165536:65536") && !strings.Contains(f.Fix[0].Shell, "vpmap:") {
			t.Errorf("fix %q", f.Fix[0].Shell)
		}
	})

	t.Run("VP302 malformed daemon.json", func(t *testing.T) {
		if err := os.WriteFile(cfg, []byte("{\n  \"userns-remap\": \"vpmap\",\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out := testenv.StartDaemonExpectFailure(t, testenv.Layout{SubUID: []string{"vpmap:100000:65536"}, SubGID: []string{"vpmap:100000:65536"}}, "--config-file", cfg)
		if !strings.Contains(out, "unable to configure the Docker daemon with file "+cfg) {
			t.Fatalf("dockerd started or said something else:\n%s", out)
		}
		r, _ := doctor(t, plain.Host, t.TempDir(), "--host", "--daemon-config", cfg)
		if f := one(t, r, "VP302"); !strings.Contains(f.Message, cfg+":3:1: invalid JSON") {
			t.Fatalf("VP302 %q does not point at the line", f.Message)
		}
	})

	t.Run("VP304 range covers a host account: container root is that account", func(t *testing.T) {
		hostUID := testenv.EnsureUser(t, "vphostuser")
		line := fmt.Sprintf("vpmap:%d:65536", hostUID)
		d := testenv.RemapDaemon(t, testenv.Layout{User: remapUser, SubUID: []string{line, fmt.Sprintf("vpother:%d:10", hostUID+5)}, SubGID: []string{"vpmap:100000:65536"}})
		img := testenv.Image(t, d)
		r, _ := doctor(t, d.Host, t.TempDir(), "--host")
		var covers, overlaps bool
		for _, f := range findingsOf(r, "VP304") {
			covers = covers || strings.Contains(f.Message, fmt.Sprintf("vphostuser (%d)", hostUID))
			overlaps = overlaps || strings.Contains(f.Message, "overlap") && f.Severity == diag.Error
		}
		if !covers || !overlaps {
			t.Fatalf("VP304 findings %+v", findingsOf(r, "VP304"))
		}
		dir := t.TempDir()
		os.Chmod(dir, 0o1777)
		got := d.CreateAs(t, img, dir, []string{"0:0"})
		if got["0:0"].UID != hostUID {
			t.Fatalf("container root created a file owned by %d, want the host account %d", got["0:0"].UID, hostUID)
		}
	})

	t.Run("VP303 no user namespaces: remapped containers cannot start", func(t *testing.T) {
		d := testenv.RemapDaemon(t, testenv.Layout{User: remapUser, SubUID: []string{"vpmap:100000:65536"}, SubGID: []string{"vpmap:100000:65536"}})
		img := testenv.Image(t, d)
		r, _ := doctor(t, d.Host, t.TempDir(), "--host")
		none(t, r, "VP302", "VP303", "VP304")
		const knob = "/proc/sys/user/max_user_namespaces"
		old, err := os.ReadFile(knob)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(knob, []byte("0"), 0o644); err != nil {
			// Some sandboxes forbid the initial namespace's knob even to
			// root. The limit is per user namespace, so prove the claim
			// one level down instead: with the limit at 0, creating a user
			// namespace (what runc does for a remapped container) fails.
			t.Logf("cannot set %s here (%v): proving the limit inside a user namespace", knob, err)
			out, err := exec.Command("unshare", "--user", "--map-root-user", "sh", "-c",
				"echo 0 > "+knob+" && unshare --user true").CombinedOutput()
			if err == nil || !strings.Contains(string(out), "No space left on device") {
				t.Fatalf("with max_user_namespaces=0 a user namespace was created (%v): %s", err, out)
			}
			return
		}
		t.Cleanup(func() { os.WriteFile(knob, old, 0o644) })
		r, _ = doctor(t, d.Host, t.TempDir(), "--host")
		one(t, r, "VP303")
		if out, rc := d.Run(t, img, testenv.RunOpts{Cmd: []string{"true"}}); rc == 0 {
			t.Fatalf("a remapped container started with max_user_namespaces=0: %s", out)
		}
		os.WriteFile(knob, old, 0o644)
		if out, rc := d.Run(t, img, testenv.RunOpts{Cmd: []string{"true"}}); rc != 0 {
			t.Fatalf("after allowing user namespaces: %s", out)
		}
	})
}

// TestDoctorCreateHostPathFalse: long syntax with create_host_path: false
// goes through the Mount API, where a missing source is refused outright.
func TestDoctorCreateHostPathFalse(t *testing.T) {
	testenv.NeedRoot(t)
	d := testenv.NeedDocker(t)
	img := testenv.Image(t, d)
	dir := project(t, fmt.Sprintf("services:\n  app:\n    image: %s\n    user: \"1000:1000\"\n    volumes:\n      - type: bind\n        source: ./missing\n        target: /data\n        bind:\n          create_host_path: false\n", img))
	r, _ := doctor(t, d.Host, dir)
	f := one(t, r, "VP101")
	want := `invalid mount config for type "bind": bind source path does not exist: ` + filepath.Join(dir, "missing")
	if f.Severity != diag.Error || !strings.Contains(f.Message, want) {
		t.Fatalf("VP101 %+v", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := d.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: img, Cmd: []string{"true"}},
		HostConfig: &container.HostConfig{NetworkMode: "none", Mounts: []mount.Mount{{
			Type: mount.TypeBind, Source: filepath.Join(dir, "missing"), Target: "/data"}}},
	})
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("the daemon said %v, doctor predicted %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("the daemon created the source after all")
	}
}
