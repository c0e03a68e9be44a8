package cli

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volperm/volperm/internal/acl"
	"github.com/volperm/volperm/internal/testenv"
	"golang.org/x/sys/unix"
)

func owner(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

func sh(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// TestShiftCorrectness checks every promise against the kernel and the
// acl and libcap tools, where chown -R breaks them.
func TestShiftCorrectness(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "setcap")
	testenv.NeedCommand(t, "getfacl")
	dir := t.TempDir()
	tr := filepath.Join(dir, "t")
	outside := filepath.Join(dir, "outside")
	sh(t, dir, `mkdir -p t/d t/mnt; echo x > outside
cd t; touch a b plain; chown 33:33 a; cp /bin/true suid; chmod 4755 suid; cp /bin/true sgid; chmod 2755 sgid
setcap cap_net_raw+ep b; cp /bin/true v3; setcap -n 1000 cap_net_bind_service+ep v3
ln a d/hardlink; ln -s `+outside+` d/link; ln -s /etc d/etc; mkfifo d/fifo; mknod d/null c 1 3
setfacl -m u:33:rw,g:1000:r,u:70000:r a; setfacl -d -m u:33:rwx d; chown 1000:1000 d
touch foreign; chown 70000:70000 foreign; setfacl -m u:33:r foreign`)
	sh(t, tr, "mount -t tmpfs tmpfs mnt && touch mnt/other")
	l, err := net.Listen("unix", filepath.Join(tr, "d", "sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	t.Cleanup(func() { exec.Command("umount", filepath.Join(tr, "mnt")).Run() })
	beforeOutside, _ := os.Lstat(outside)
	etcUID, _ := owner(t, "/etc")

	stdout, stderr, code := runCLI(t, "unix:///nonexistent.sock", "shift", tr, "--from", "host", "--to", "ranges:0:100000:65536", "--journal", filepath.Join(dir, "j.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	want := map[string][2]uint32{
		"a": {100033, 100033}, "b": {100000, 100000}, "suid": {100000, 100000}, "d": {101000, 101000},
		"d/hardlink": {100033, 100033}, "d/link": {100000, 100000}, "d/fifo": {100000, 100000}, "d/null": {100000, 100000},
		"d/sock": {100000, 100000}, "foreign": {70000, 70000},
	}
	for p, w := range want {
		if u, g := owner(t, filepath.Join(tr, p)); u != w[0] || g != w[1] {
			t.Errorf("%s: %d:%d, want %d:%d", p, u, g, w[0], w[1])
		}
	}
	if u, _ := owner(t, filepath.Join(tr, "mnt", "other")); u != 0 {
		t.Errorf("crossed into a mounted filesystem: mnt/other is %d", u)
	}
	if st, _ := os.Lstat(outside); st.Sys().(*syscall.Stat_t).Uid != beforeOutside.Sys().(*syscall.Stat_t).Uid {
		t.Error("a symlink was followed out of the tree")
	}
	if u, _ := owner(t, "/etc"); u != etcUID {
		t.Fatal("/etc changed through a symlink")
	}
	for p, mode := range map[string]os.FileMode{"suid": os.ModeSetuid | 0o755, "sgid": os.ModeSetgid | 0o755} {
		st, _ := os.Stat(filepath.Join(tr, p))
		if st.Mode()&(os.ModeSetuid|os.ModeSetgid|0o777) != mode {
			t.Errorf("%s mode %v, want %v kept", p, st.Mode(), mode)
		}
	}
	facl := sh(t, tr, "getfacl -n -p a d")
	for _, w := range []string{"user:100033:rw-", "group:101000:r--", "user:70000:r--", "default:user:100033:rwx"} {
		if !strings.Contains(facl, w) {
			t.Errorf("getfacl lacks %q (70000 is unmapped under --from host→ranges and stays):\n%s", w, facl)
		}
	}
	// An owner the target mapping has no id for stays; the ids in its ACL move.
	facl = sh(t, tr, "getfacl -n -p foreign")
	for _, w := range []string{"# owner: 70000", "user:100033:r--"} {
		if !strings.Contains(facl, w) {
			t.Errorf("getfacl lacks %q (the owner stays, the ACL entry for container user 33 moves):\n%s", w, facl)
		}
	}
	caps := sh(t, tr, "getcap -n b v3")
	if !strings.Contains(caps, "b cap_net_raw=ep") || !strings.Contains(caps, "v3 cap_net_bind_service=ep [rootid=101000]") {
		t.Errorf("capabilities after the shift:\n%s", caps)
	}
	if !strings.Contains(stdout, "entries seen") {
		t.Errorf("no summary: %s", stdout)
	}

	// A no-op rerun writes nothing: not even a ctime moves.
	before := ctimes(t, tr)
	out2, _, code := runCLI(t, "unix:///nonexistent.sock", "shift", tr, "--from", "host", "--to", "ranges:0:100000:65536", "--journal", filepath.Join(dir, "j.json"))
	if code != 0 || !strings.Contains(out2, " 0 changed") {
		t.Fatalf("rerun: exit %d: %s", code, out2)
	}
	for p, c := range ctimes(t, tr) {
		if before[p] != c {
			t.Errorf("the rerun touched %s", p)
		}
	}

	// --cross-mounts descends into the mounted filesystem too.
	if _, stderr, code := runCLI(t, "unix:///nonexistent.sock", "shift", tr, "--from", "host", "--to", "ranges:0:100000:65536", "--cross-mounts", "--journal", filepath.Join(dir, "j2.json")); code != 0 {
		t.Fatal(stderr)
	}
	if u, _ := owner(t, filepath.Join(tr, "mnt", "other")); u != 100000 {
		t.Errorf("--cross-mounts: mnt/other is %d", u)
	}

	// chown -R, for contrast, loses what shift kept.
	cmp := filepath.Join(dir, "cmp")
	sh(t, dir, "mkdir cmp; cp /bin/true cmp/suid; chmod 4755 cmp/suid; cp /bin/true cmp/b; setcap cap_net_raw+ep cmp/b; chown -R 100000:100000 cmp")
	if st, _ := os.Stat(filepath.Join(cmp, "suid")); st.Mode()&os.ModeSetuid != 0 {
		t.Log("note: chown -R kept setuid on this kernel")
	}
	if out := sh(t, cmp, "getcap b || true"); strings.Contains(out, "cap_net_raw") {
		t.Log("note: chown -R kept the capability on this kernel")
	}
}

// TestShiftDryRunAndBadInput: counts without changes; clear errors.
func TestShiftDryRunAndBadInput(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	sh(t, dir, "mkdir t; touch t/a t/b; chown 33:33 t/a")
	out, _, code := runCLI(t, "unix:///nonexistent.sock", "shift", filepath.Join(dir, "t"), "--from", "host", "--to", "ranges:0:100000:65536", "--dry-run", "--journal", filepath.Join(dir, "j"))
	if code != 0 || !strings.Contains(out, "3 entries seen, 3 would change") {
		t.Fatalf("dry run: %d %s", code, out)
	}
	if u, _ := owner(t, filepath.Join(dir, "t", "a")); u != 33 {
		t.Fatal("--dry-run changed an owner")
	}
	os.Symlink("/etc", filepath.Join(dir, "link"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{filepath.Join(dir, "link"), "--from", "host", "--to", "ranges:0:100000:65536"}, "is a symlink (to /etc): refusing"},
		{[]string{filepath.Join(dir, "t"), "--from", "host", "--to", "ranges:0:100000"}, `want CONTAINER:HOST:SIZE`},
		{[]string{filepath.Join(dir, "t"), "--from", "bogus", "--to", "host"}, "want host, remap:USER[:GROUP], rootless:USER or ranges"},
		{[]string{filepath.Join(dir, "t"), "--from", "remap:vpnosuch", "--to", "host"}, `Error during uid lookup for "vpnosuch"`},
		{[]string{filepath.Join(dir, "t"), "--resume", "--journal", filepath.Join(dir, "none")}, "--resume: no journal"},
	} {
		_, stderr, code := runCLI(t, "unix:///nonexistent.sock", append([]string{"shift"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 1 {
			t.Errorf("%v: exit %d, %q, want %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestShiftKill9Resume kills shifts at random points and resumes them:
// every entry ends exactly once shifted, and every setuid file keeps its
// bit, for a plain and for an overlapping (two-phase) pair of mappings.
func TestShiftKill9Resume(t *testing.T) {
	testenv.NeedRoot(t)
	bin := testenv.Build(t, "github.com/volperm/volperm/cmd/volperm")
	for _, tc := range []struct{ from, to string }{
		{"host", "ranges:0:100000:65536"},
		{"ranges:0:100000:65536", "ranges:0:150000:65536"}, // overlapping: 150000-165535 is both
	} {
		t.Run(tc.to+"<-"+tc.from, func(t *testing.T) {
			build := func(tr string, base uint32) {
				// 40 directories of 250 files, owned by container ids 0..249
				// under --from.
				for d := 1; d <= 40; d++ {
					dd := filepath.Join(tr, fmt.Sprintf("d%d", d))
					if err := os.MkdirAll(dd, 0o755); err != nil {
						t.Fatal(err)
					}
					for f := 0; f < 250; f++ {
						p := filepath.Join(dd, fmt.Sprintf("f%d", f))
						os.WriteFile(p, nil, 0o644)
						os.Lchown(p, int(base)+f, int(base)+f)
						switch f % 10 {
						case 3: // setuid: the chown clears it, the shift must not lose it
							os.Chmod(p, 0o755|os.ModeSetuid)
						case 5: // named ACL entries, to be shifted
							if err := acl.Set(p, acl.AccessXattr, killACL(base, f)); err != nil {
								t.Fatal(err)
							}
						case 7: // a v3 capability: the chown removes it, its root id is shifted
							if err := unix.Lsetxattr(p, "security.capability", testenv.FileCap(true, base+1000), 0); err != nil {
								t.Fatal(err)
							}
						}
					}
					os.Lchown(dd, int(base), int(base))
				}
				os.Lchown(tr, int(base), int(base))
			}
			base := uint32(0)
			if tc.from != "host" {
				base = 100000
			}
			// Kill at fractions of a whole shift's duration on this machine.
			probe := filepath.Join(t.TempDir(), "t")
			build(probe, base)
			began := time.Now()
			if out, err := exec.Command(bin, "shift", probe, "--from", tc.from, "--to", tc.to, "--journal", probe+".j", "--progress", "never").CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			whole := time.Since(began)
			interrupted := 0
			for round, frac := range []float64{0.1, 0.3, 0.5, 0.7, 0.9} {
				delay := time.Duration(frac * float64(whole))
				dir := t.TempDir()
				tr := filepath.Join(dir, "t")
				build(tr, base)
				journal := filepath.Join(dir, "j.json")
				run := exec.Command(bin, "shift", tr, "--from", tc.from, "--to", tc.to, "--journal", journal, "--workers", "2", "--progress", "never")
				if err := run.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(delay)
				run.Process.Kill()
				run.Wait()
				if j, _ := readJournal(journal); j != nil && j.State == "running" {
					interrupted++
				}
				out, err := exec.Command(bin, "shift", tr, "--resume", "--from", tc.from, "--to", tc.to, "--journal", journal, "--progress", "never").CombinedOutput()
				if err != nil {
					t.Fatalf("round %d: resume: %v\n%s", round, err, out)
				}
				toBase := uint32(100000)
				if tc.from != "host" {
					toBase = 150000
				}
				for d := 1; d <= 40; d += 13 {
					for f := 0; f < 250; f += 37 {
						p := filepath.Join(tr, fmt.Sprintf("d%d/f%d", d, f))
						if u, g := owner(t, p); u != toBase+uint32(f) || g != toBase+uint32(f) {
							t.Fatalf("round %d (killed after %v): %s is %d:%d, want %d", round, delay, p, u, g, toBase+uint32(f))
						}
					}
				}
				if u, _ := owner(t, tr); u != toBase {
					t.Fatalf("round %d: the top directory is %d", round, u)
				}
				for d := 1; d <= 40; d++ {
					for f := 3; f < 250; f += 10 {
						p := filepath.Join(tr, fmt.Sprintf("d%d/f%d", d, f))
						if st, err := os.Lstat(p); err != nil || st.Mode()&os.ModeSetuid == 0 {
							t.Fatalf("round %d (killed after %v): %s lost its setuid bit", round, delay, p)
						}
						p = filepath.Join(tr, fmt.Sprintf("d%d/f%d", d, f+2))
						if got, err := acl.Get(p, acl.AccessXattr); err != nil || got.String() != killACL(toBase, f+2).Sorted().String() {
							t.Fatalf("round %d (killed after %v): %s has the ACL %v (%v), want %v", round, delay, p, got, err, killACL(toBase, f+2))
						}
						p = filepath.Join(tr, fmt.Sprintf("d%d/f%d", d, f+4))
						buf := make([]byte, 64)
						n, err := unix.Lgetxattr(p, "security.capability", buf)
						if want := testenv.FileCap(true, toBase+1000); err != nil || string(buf[:n]) != string(want) {
							t.Fatalf("round %d (killed after %v): %s has the capability %x (%v), want %x", round, delay, p, buf[:max(n, 0)], err, want)
						}
					}
				}
			}
			if interrupted == 0 {
				t.Fatal("no round killed the shift while it ran: the test proves nothing")
			}
			t.Logf("%d of 5 rounds killed a running shift", interrupted)
		})
	}
}

// killACL is the access ACL of the kill test's files: container uid f+1
// and gid 7 named, under the mapping whose container 0 is host base.
func killACL(base uint32, f int) acl.ACL {
	return acl.ACL{
		{Tag: acl.UserObj, Perm: acl.Read | acl.Write, ID: acl.UndefinedID},
		{Tag: acl.User, Perm: acl.Read, ID: base + uint32(f) + 1},
		{Tag: acl.GroupObj, Perm: acl.Read, ID: acl.UndefinedID},
		{Tag: acl.Group, Perm: acl.Read | acl.Write, ID: base + 7},
		{Tag: acl.Mask, Perm: acl.Read | acl.Write, ID: acl.UndefinedID},
		{Tag: acl.Other, Perm: acl.Read, ID: acl.UndefinedID},
	}
}

// TestShiftForRemappedDaemon: files containers wrote on the plain daemon,
// shifted --from host --to remap:USER, are the same container ids' files
// on the remapped daemon.
func TestShiftForRemappedDaemon(t *testing.T) {
	testenv.NeedRoot(t)
	plain := testenv.NeedDocker(t)
	img := testenv.Image(t, plain)
	vol, err := os.MkdirTemp("", "vp-vol-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(vol) })
	os.Chmod(vol, 0o1777)
	for _, u := range []string{"0:0", "33:33", "1000:1000"} {
		if out, code := plain.Run(t, img, testenv.RunOpts{User: u, Binds: []string{vol + ":/x"}, Cmd: []string{"sh", "-c", "mkdir /x/u" + strings.Split(u, ":")[0] + " && echo data > /x/u" + strings.Split(u, ":")[0] + "/f && chmod 0700 /x/u" + strings.Split(u, ":")[0]}}); code != 0 {
			t.Fatalf("%s: %s", u, out)
		}
	}
	testenv.EnsureUser(t, remapUser)
	d := testenv.RemapDaemon(t, testenv.Layout{User: remapUser, SubUID: []string{"vpmap:100000:65536"}, SubGID: []string{"vpmap:100000:65536"}})
	rimg := testenv.Image(t, d)
	// Before: www-data on the remapped daemon cannot read its own data.
	if out, code := d.Run(t, rimg, testenv.RunOpts{User: "33:33", Binds: []string{vol + ":/x"}, Cmd: []string{"cat", "/x/u33/f"}}); code == 0 {
		t.Fatalf("read before the shift: %s", out)
	}
	if _, stderr, code := runCLI(t, d.Host, "shift", vol, "--from", "host", "--to", "remap:"+remapUser, "--journal", filepath.Join(t.TempDir(), "j")); code != 0 {
		t.Fatal(stderr)
	}
	for _, u := range []string{"0", "33", "1000"} {
		out, code := d.Run(t, rimg, testenv.RunOpts{User: u + ":" + u, Binds: []string{vol + ":/x"}, Cmd: []string{"sh", "-c", "cat /x/u" + u + "/f && echo more >> /x/u" + u + "/f && stat -c '%u' /x/u" + u + "/f"}})
		if code != 0 || !strings.HasSuffix(strings.TrimSpace(out), u) {
			t.Errorf("container uid %s on the remapped daemon: exit %d: %s", u, code, out)
		}
	}
}
