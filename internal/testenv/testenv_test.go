package testenv

import (
	"bytes"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// bindDir is a directory any container user may create files in.
func bindDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestImageAccounts(t *testing.T) {
	d := NeedDocker(t)
	img := Image(t, d)
	for _, tc := range []struct{ user, want string }{
		{"1000", "uid=1000(node) gid=1000(node) groups=1000(node),2000(shared)"},
		{"33", "uid=33(www-data) gid=33(www-data) groups=33(www-data),2000(shared)"},
		{"70000", "uid=70000(big) gid=70000(big)"},
		{"", "uid=0(root) gid=0(root)"},
	} {
		start := time.Now()
		out, code := d.Run(t, img, RunOpts{User: tc.user, Cmd: []string{"id"}})
		t.Logf("--user %q: id in %v: %s", tc.user, time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
		if code != 0 || !strings.HasPrefix(out, tc.want) {
			t.Errorf("--user %q: id printed %q (exit %d), want it to start with %q", tc.user, out, code, tc.want)
		}
	}
	out, code := d.Run(t, img, RunOpts{Cmd: []string{"sh", "-c", "stat -c '%u:%g %a %n' /home/node /tmp; echo to-stderr >&2; exit 3"}})
	if want := "1000:1000 755 /home/node\n0:0 1777 /tmp\n"; code != 3 || !strings.Contains(out, want) || !strings.Contains(out, "to-stderr\n") {
		t.Errorf("got output %q exit %d, want %q and stderr's line, exit 3", out, code, want)
	}
	out, code = d.Run(t, img, RunOpts{User: "node", GroupAdd: []string{"lonely"}, Env: []string{"GREETING=hi"}, Cmd: []string{"sh", "-c", "id -G; echo $GREETING"}})
	if want := "1000 2000 3000\nhi\n"; code != 0 || out != want {
		t.Errorf("--group-add lonely and an env var: got %q exit %d, want %q", out, code, want)
	}
	if out, code := d.Run(t, "volperm-no-such-image:0", RunOpts{Cmd: []string{"true"}}); code != -1 || !strings.Contains(out, "No such image") {
		t.Errorf("a missing image: got %q exit %d, want the daemon's refusal and -1", out, code)
	}
}

func TestCreateAsDefaultDaemon(t *testing.T) {
	NeedRoot(t)
	d := NeedDocker(t)
	img := Image(t, d)
	dir := bindDir(t)
	got := d.CreateAs(t, img, dir, []string{"0", "33", "1000:1000"})
	// --user 33 without a group takes the primary group from the image's
	// /etc/passwd: www-data's 33.
	want := map[string]Owner{"0": {0, 0}, "33": {33, 33}, "1000:1000": {1000, 1000}}
	if !maps.Equal(got, want) {
		t.Errorf("host owners %v, want %v", got, want)
	}
	seen := d.SeenAs(t, img, dir)
	wantSeen := map[string]Owner{"f-0": {0, 0}, "f-33": {33, 33}, "f-1000_1000": {1000, 1000}}
	if !maps.Equal(seen, wantSeen) {
		t.Errorf("the container sees %v, want %v", seen, wantSeen)
	}
}

func TestRemapDaemon(t *testing.T) {
	NeedRoot(t)
	l := Layout{User: "vptest", SubUID: []string{"vptest:100000:65536"}, SubGID: []string{"vptest:100000:65536"}}
	d := RemapDaemon(t, l)
	if again := RemapDaemon(t, l); again != d {
		t.Errorf("the same layout started a new daemon (pid %d, was %d)", again.PID, d.PID)
	}
	for path, want := range map[string]string{"/etc/subuid": "vptest:100000:65536\n", "/etc/subgid": "vptest:100000:65536\n"} {
		if got, err := os.ReadFile(path); err != nil || string(got) != want {
			t.Errorf("%s is %q (%v), want %q", path, got, err, want)
		}
	}
	img := Image(t, d)
	dir := bindDir(t)
	got := d.CreateAs(t, img, dir, []string{"0", "33:33"})
	want := map[string]Owner{"0": {100000, 100000}, "33:33": {100033, 100033}}
	if !maps.Equal(got, want) {
		t.Errorf("host owners %v, want %v", got, want)
	}
	seen := d.SeenAs(t, img, dir)
	if wantSeen := map[string]Owner{"f-0": {0, 0}, "f-33_33": {33, 33}}; !maps.Equal(seen, wantSeen) {
		t.Errorf("the container sees %v, want %v", seen, wantSeen)
	}
	if fi, err := os.Stat(filepath.Join(d.DataRoot, "100000.100000")); err != nil || !fi.IsDir() {
		t.Errorf("data root %s has no directory 100000.100000: %v", d.DataRoot, err)
	}
	// No network but loopback: the daemon runs without a bridge.
	if out, code := d.Run(t, img, RunOpts{Cmd: []string{"ls", "/sys/class/net"}}); code != 0 || out != "lo\n" {
		t.Errorf("network interfaces %q (exit %d), want only lo", out, code)
	}
	// --userns=host opts out of the remap.
	if out, code := d.Run(t, img, RunOpts{UsernsMode: "host", Cmd: []string{"cat", "/proc/self/uid_map"}}); code != 0 || strings.Fields(out)[1] != "0" {
		t.Errorf("--userns=host uid_map %q (exit %d), want the identity", out, code)
	}

	// Another layout replaces the daemon and keeps the data root.
	l2 := Layout{User: "vptest", SubUID: []string{"vptest:200000:65536"}, SubGID: []string{"vptest:300000:65536"}}
	d2 := RemapDaemon(t, l2)
	if d2.PID == d.PID {
		t.Fatalf("a new layout reused daemon pid %d", d.PID)
	}
	if err := syscall.Kill(d.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the first daemon (pid %d) still runs: %v", d.PID, err)
	}
	if d2.DataRoot != d.DataRoot {
		t.Errorf("data root %s, was %s", d2.DataRoot, d.DataRoot)
	}
	img = Image(t, d2)
	got = d2.CreateAs(t, img, bindDir(t), []string{"0"})
	if want := (Owner{200000, 300000}); got["0"] != want {
		t.Errorf("container root made a file owned by %v on the host, want %v", got["0"], want)
	}
	if _, err := os.Stat(filepath.Join(d.DataRoot, "200000.300000")); err != nil {
		t.Errorf("data root: %v", err)
	}

	// A timed run, back on the first layout.
	d = RemapDaemon(t, l)
	img = Image(t, d)
	start := time.Now()
	out, code := d.Run(t, img, RunOpts{User: "1000", Cmd: []string{"id", "-u"}})
	t.Logf("one Run on the remap daemon: %v", time.Since(start).Round(time.Millisecond))
	if code != 0 || out != "1000\n" {
		t.Errorf("id -u printed %q (exit %d)", out, code)
	}
}

// TestDaemonRefuses records what dockerd prints for broken setups.
func TestDaemonRefuses(t *testing.T) {
	NeedRoot(t)
	badConfig := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(badConfig, []byte(`{"userns-remap": "vptest",`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		l     Layout
		extra []string
		want  string
	}{
		{"no subuid lines", Layout{User: "vpnosub"}, nil,
			`Can't create ID mappings: no subuid ranges found for user "vpnosub"`},
		{"no subgid lines", Layout{User: "vpnosub", SubUID: []string{"vpnosub:100000:65536"}}, nil,
			`Can't create ID mappings: no subgid ranges found for user "vpnosub"`},
		{"no such user", Layout{SubUID: []string{"vpnosuch:100000:65536"}, SubGID: []string{"vpnosuch:100000:65536"}}, []string{"--userns-remap=vpnosuch"},
			`Error during uid lookup for "vpnosuch": getent unable to find entry "vpnosuch" in passwd database`},
		{"truncated daemon.json", Layout{}, []string{"--config-file", badConfig},
			"unable to configure the Docker daemon with file " + badConfig + ": unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := StartDaemonExpectFailure(t, tc.l, tc.extra...)
			t.Logf("dockerd printed:\n%s", out)
			if !strings.Contains(out, tc.want) {
				t.Errorf("dockerd's output lacks %q", tc.want)
			}
		})
	}
}

// TestRestoreFile covers saving and restoring on scratch files: content
// byte for byte (no final newline, comments), mode, and absence.
func TestRestoreFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subuid")
	orig := []byte("# kept\nalice:100000:65536\nbob:165536:65536")
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	saved, err := saveFile(path)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := saveFile(filepath.Join(dir, "subgid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(path, []byte("vptest:1:2\n"), 0o644, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(missing.Path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := undo(journal{Files: []savedFile{saved, missing}}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, orig) {
		t.Errorf("restored %q (%v), want %q", got, err, orig)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("restored mode %v (%v), want 0600", fi.Mode(), err)
	}
	if _, err := os.Stat(missing.Path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file missing at first exists after the restore: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

// TestCleanupRestoresHost runs the cleanup Main runs at the end, in the
// middle: afterwards the host is as it was before the tests, and the next
// call starts afresh.
func TestCleanupRestoresHost(t *testing.T) {
	NeedRoot(t)
	// Take the cross-process lock first: another test package may hold
	// /etc/subuid in one of its layouts until its own Cleanup.
	EnsureUser(t, "root")
	state.Lock()
	before := map[string]savedFile{}
	for _, f := range state.host.journal.Files {
		before[f.Path] = f
	}
	state.Unlock()
	origSubUID, origSubGID := before["/etc/subuid"].Data, before["/etc/subgid"].Data
	_, existed := user.Lookup("vprestore")
	d := RemapDaemon(t, Layout{User: "vprestore", SubUID: []string{"vprestore:100000:65536"}, SubGID: []string{"vprestore:100000:65536"}})
	if got, _ := os.ReadFile("/etc/subuid"); bytes.Equal(got, origSubUID) {
		t.Fatal("the layout did not change /etc/subuid")
	}
	Cleanup()
	if got, err := os.ReadFile("/etc/subuid"); err != nil || !bytes.Equal(got, origSubUID) {
		t.Errorf("/etc/subuid is %q (%v) after Cleanup, was %q", got, err, origSubUID)
	}
	if got, err := os.ReadFile("/etc/subgid"); err != nil || !bytes.Equal(got, origSubGID) {
		t.Errorf("/etc/subgid is %q (%v) after Cleanup, was %q", got, err, origSubGID)
	}
	if _, err := user.Lookup("vprestore"); existed != nil && err == nil {
		t.Error("Cleanup left the user vprestore it created")
	}
	if err := syscall.Kill(d.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the remap daemon (pid %d) survived Cleanup: %v", d.PID, err)
	}
	if _, err := os.Stat(journalPath()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the journal survived Cleanup: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(d.DataRoot)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the daemons' directory survived Cleanup: %v", err)
	}
}
