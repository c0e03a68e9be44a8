package userns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volperm/volperm/internal/plan"
)

// fixture is a host image with comments, unrelated lines and keys, odd
// modes, and every file an apply with --create-user writes.
func fixture(t *testing.T) System {
	t.Helper()
	sys := sysWith(t, base(map[string]string{
		"/etc/shadow":             "root:*:19000:0:99999:7:::\n",
		"/etc/gshadow":            "root:*::\n",
		"/etc/subuid":             "# managed by hand\nalice:100000:65536\n\n",
		"/etc/subgid":             "alice:100000:65536",
		"/etc/docker/daemon.json": "{\n\t\"log-driver\": \"journald\",\n\t\"features\": {\"buildkit\": true}\n}\n",
	}))
	for p, mode := range map[string]fs.FileMode{"/etc/shadow": 0o640, "/etc/gshadow": 0o600, "/etc/docker/daemon.json": 0o600} {
		if err := os.Chmod(sys.Path(p), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(sys.Path("/etc/shadow"), 0, 42); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	return sys
}

// snapshot is every file of a system with its mode and owner.
type snapshot map[string]string

func snap(t *testing.T, sys System, skip ...string) snapshot {
	t.Helper()
	s := snapshot{}
	err := filepath.WalkDir(sys.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, sys.Root)
		for _, k := range skip {
			if strings.HasPrefix(rel, k) {
				return nil
			}
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		o := plan.OwnerOf(fi)
		s[rel] = fmt.Sprintf("%v %d:%d %q", fi.Mode(), o.UID, o.GID, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func planFor(t *testing.T, sys System) *Plan {
	t.Helper()
	p, err := Make(readHost(t, sys), Request{User: "vpnew", CreateUser: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRoundTrip: apply, then revert, leaves every file byte for byte as
// it was, with its mode and owner; the backups go away, the record stays.
func TestRoundTrip(t *testing.T) {
	sys := fixture(t)
	before := snap(t, sys)
	p := planFor(t, sys)
	if len(p.Changes) != 7 {
		t.Fatalf("%d changes, want passwd, group, shadow, gshadow, subuid, subgid, daemon.json", len(p.Changes))
	}
	ops := DefaultOps()
	ops.Now = func() time.Time { return time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC) }
	m, err := Apply(sys, p, ops)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != "applied" || m.Stamp != "20260102T150405Z" {
		t.Fatalf("manifest %+v", m)
	}
	after := snap(t, sys, ManifestDir)
	for _, c := range p.Changes {
		b := sys.Path(c.Host + BackupSuffix + m.Stamp)
		if after[c.Host+BackupSuffix+m.Stamp] != before[c.Host] {
			t.Errorf("backup %s is not the old file with its mode and owner", b)
		}
		if !strings.Contains(after[c.Host], fmt.Sprintf("%q", c.New)) || !strings.HasPrefix(after[c.Host], strings.SplitN(before[c.Host], " ", 3)[0]+" "+strings.SplitN(before[c.Host], " ", 3)[1]) {
			t.Errorf("%s: %s, want the new content with the old mode and owner (%s)", c.Host, after[c.Host], before[c.Host])
		}
	}
	// The same second again gets a stamp of its own.
	p2, err := Make(readHost(t, sys), Request{User: "vpnew", Size: 70000})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Apply(sys, p2, ops)
	if err != nil || m2.Stamp != "20260102T150405Z-2" {
		t.Fatalf("second apply %v: %+v", err, m2)
	}
	for _, stamp := range []string{m2.Stamp, m.Stamp} {
		got, err := Revert(sys, false, DefaultOps())
		if err != nil || got.Stamp != stamp {
			t.Fatalf("revert: %v, %+v, want %s", err, got, stamp)
		}
	}
	if d := diffSnap(before, snap(t, sys, ManifestDir)); d != "" {
		t.Fatalf("after apply and revert:\n%s", d)
	}
	if _, err := Revert(sys, false, DefaultOps()); err == nil || !strings.Contains(err.Error(), "nothing to revert") {
		t.Fatalf("a third revert: %v", err)
	}
}

func diffSnap(want, got snapshot) string {
	var b strings.Builder
	for k, v := range want {
		if got[k] != v {
			fmt.Fprintf(&b, "%s: %s, want %s\n", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "%s: left behind: %s\n", k, v)
		}
	}
	return b.String()
}

// TestRevertRefusesChangedFiles: a file changed since the apply stops the
// revert before anything is written; --force restores anyway.
func TestRevertRefusesChangedFiles(t *testing.T) {
	sys := fixture(t)
	before := snap(t, sys)
	if _, err := Apply(sys, planFor(t, sys), DefaultOps()); err != nil {
		t.Fatal(err)
	}
	edited := sys.Path("/etc/subuid")
	if err := os.WriteFile(edited, []byte("someone:1:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mid := snap(t, sys)
	_, err := Revert(sys, false, DefaultOps())
	if err == nil || !strings.Contains(err.Error(), edited+" changed since the apply") || !strings.Contains(err.Error(), "nothing restored") {
		t.Fatalf("revert over an edited file: %v", err)
	}
	if d := diffSnap(mid, snap(t, sys)); d != "" {
		t.Fatalf("a refused revert wrote:\n%s", d)
	}
	if _, err := Revert(sys, true, DefaultOps()); err != nil {
		t.Fatal(err)
	}
	if d := diffSnap(before, snap(t, sys, ManifestDir)); d != "" {
		t.Fatalf("after a forced revert:\n%s", d)
	}
}

// failAt is Ops whose k-th write (1-based) fails in one of three ways,
// leaving what a crash at that point would leave.
func failAt(k int, how string) (Ops, *int) {
	n := 0
	ops := DefaultOps()
	ops.Write = func(path string, data []byte, mode fs.FileMode, uid, gid int) error {
		n++
		if n != k {
			return plan.WriteAtomicAs(path, data, mode, uid, gid)
		}
		switch how {
		case "partial temp":
			f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".volperm-*")
			if err != nil {
				return err
			}
			f.Write(data[:len(data)/2])
			f.Close()
		case "temp written, not renamed":
			f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".volperm-*")
			if err != nil {
				return err
			}
			f.Write(data)
			f.Sync()
			f.Close()
		}
		return errors.New("interrupted")
	}
	return ops, &n
}

// TestApplyInterrupted interrupts an apply at each of its writes, in each
// way a crash can leave it: every file is then byte for byte its old or
// its new content, never a mix or a truncation, and revert restores the
// old content of all of them.
func TestApplyInterrupted(t *testing.T) {
	probe := fixture(t)
	counting, n := failAt(-1, "")
	if _, err := Apply(probe, planFor(t, probe), counting); err != nil {
		t.Fatal(err)
	}
	writes := *n
	if writes != 7+1+7+1 {
		t.Fatalf("%d writes: want 7 backups, the record, 7 files, the record", writes)
	}
	for k := 1; k <= writes; k++ {
		for _, how := range []string{"nothing written", "partial temp", "temp written, not renamed"} {
			t.Run(fmt.Sprintf("write %d %s", k, how), func(t *testing.T) {
				sys := fixture(t)
				before := snap(t, sys)
				p := planFor(t, sys)
				ops, _ := failAt(k, how)
				if _, err := Apply(sys, p, ops); err == nil {
					t.Fatal("the interrupted apply reported success")
				}
				for _, c := range p.Changes {
					now, err := os.ReadFile(c.Path)
					if err != nil && !(errors.Is(err, fs.ErrNotExist) && !c.Existed) {
						t.Fatal(err)
					}
					if !bytes.Equal(now, c.Old) && !bytes.Equal(now, c.New) {
						t.Errorf("%s is neither old nor new: %q", c.Host, now)
					}
				}
				if k <= 8 {
					// No record yet: nothing changed, nothing to revert.
					if _, err := Revert(sys, false, DefaultOps()); err == nil || !strings.Contains(err.Error(), "nothing to revert") {
						t.Fatalf("revert before any record: %v", err)
					}
				} else {
					if k < writes {
						// An unfinished apply blocks the next one.
						if _, err := Apply(sys, p, DefaultOps()); err == nil || !strings.Contains(err.Error(), "did not finish") {
							t.Fatalf("apply after an interrupted one: %v", err)
						}
					}
					if _, err := Revert(sys, false, DefaultOps()); err != nil {
						t.Fatalf("revert after the interruption: %v", err)
					}
				}
				// Left-over temporary files of the crash aside, all is as
				// before: a failed apply removes the backups it wrote.
				if d := diffSnap(before, snap(t, sys, ManifestDir)); d != "" && !onlyTemps(d, false) {
					t.Fatalf("after revert:\n%s", d)
				}
			})
		}
	}
}

// onlyTemps reports whether the differences are files a crash leaves:
// temporary files of the atomic writer (.NAME.volperm-RANDOM), and
// backups written before the record that would name them.
func onlyTemps(d string, backups bool) bool {
	for _, l := range strings.Split(strings.TrimSpace(d), "\n") {
		path, _, _ := strings.Cut(l, ": left behind: ")
		base := filepath.Base(path)
		temp := strings.HasPrefix(base, ".") && strings.Contains(base, ".volperm-")
		backup := backups && !strings.HasPrefix(base, ".") && strings.Contains(base, BackupSuffix)
		if !strings.Contains(l, ": left behind: ") || !temp && !backup {
			return false
		}
	}
	return true
}

const killEnv = "VOLPERM_USERNS_APPLY_ROOT"

// TestMain doubles as the apply killed by TestApplyKilled.
func TestMain(m *testing.M) {
	if root := os.Getenv(killEnv); root != "" {
		sys := System{Root: root}
		h, err := Read(sys, ReadOptions{Version: Version20})
		if err == nil {
			var p *Plan
			if p, err = Make(h, Request{User: "vpnew", CreateUser: true}); err == nil {
				ops := DefaultOps()
				slow := ops.Write
				ops.Write = func(path string, data []byte, mode fs.FileMode, uid, gid int) error {
					time.Sleep(time.Millisecond)
					return slow(path, data, mode, uid, gid)
				}
				fmt.Println("applying") // the parent's cue to start its clock
				_, err = Apply(sys, p, ops)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestApplyKilled kills real applies (the real atomic writer, a process
// ended by SIGKILL) at random moments: whenever it dies, each file is old
// or new, and revert brings back the old state.
func TestApplyKilled(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	outcomes := map[string]int{}
	// The first run is not killed: it measures how long an apply takes.
	span := time.Duration(0)
	for i := range 41 {
		sys := fixture(t)
		before := snap(t, sys)
		p := planFor(t, sys)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), killEnv+"="+sys.Root)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			t.Fatalf("run %d: the apply did not start: %v", i, err)
		}
		start := time.Now()
		if i > 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(span))))
			cmd.Process.Signal(syscall.SIGKILL)
		}
		err = cmd.Wait()
		if i == 0 {
			if err != nil {
				t.Fatalf("an apply left alone failed: %v", err)
			}
			span = time.Since(start) * 6 / 5
			t.Logf("an apply takes %v", time.Since(start))
		}
		killed := err != nil
		newFiles := 0
		for _, c := range p.Changes {
			now, _ := os.ReadFile(c.Path)
			switch {
			case bytes.Equal(now, c.New):
				newFiles++
			case !bytes.Equal(now, c.Old):
				t.Fatalf("run %d: %s is neither old nor new: %q", i, c.Host, now)
			}
		}
		outcomes[fmt.Sprintf("killed=%v new=%d", killed, newFiles)]++
		if _, err := Revert(sys, false, DefaultOps()); err != nil && !strings.Contains(err.Error(), "nothing to revert") {
			t.Fatalf("run %d: revert: %v", i, err)
		}
		if d := diffSnap(before, snap(t, sys, ManifestDir)); d != "" && !onlyTemps(d, true) {
			t.Fatalf("run %d: after revert:\n%s", i, d)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// The record names a user as created only once useradd succeeded: a
// useradd that fails (the user appeared meanwhile) must not lead revert
// to delete someone else's account.
func TestCreatedUserRecordedAfterUseradd(t *testing.T) {
	for _, fail := range []bool{true, false} {
		sys := fixture(t)
		p := planFor(t, sys)
		p.UserAdd = []string{"useradd", "vpnew"}
		ops := DefaultOps()
		ops.Run = func(args ...string) error {
			if fail {
				return errors.New("useradd: user 'vpnew' already exists")
			}
			return nil
		}
		m, err := Apply(sys, p, ops)
		if (err != nil) != fail || m == nil {
			t.Fatalf("useradd failing=%v: apply error %v", fail, err)
		}
		data, err := os.ReadFile(m.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(data), `"created_user": "vpnew"`); got == fail {
			t.Errorf("useradd failing=%v: record names the user as created: %v\n%s", fail, got, data)
		}
	}
}
