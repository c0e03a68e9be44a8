package tree

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/acl"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/testenv"
)

// TestShiftSystemCallPaths shifts the same small tree through each way the
// shift can reach the kernel — raw calls and *xattrat/fchmodat2, normal
// calls (any walk across mounts), and the /proc fallbacks for kernels
// without the newer calls — and checks every result on the real files.
func TestShiftSystemCallPaths(t *testing.T) {
	testenv.NeedRoot(t)
	host := idmap.HostIdentity()
	r := idmap.Map{{Container: 0, Host: 100000, Size: 65536}}
	remapped := idmap.Mapping{UID: r, GID: r}
	for _, c := range []struct {
		name  string
		cross bool
		old   bool
	}{
		{name: "raw calls"},
		{name: "normal calls", cross: true},
		{name: "proc fallbacks", old: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.old {
				noXattrat.Store(true)
				noFchmodat2.Store(true)
				t.Cleanup(func() { noXattrat.Store(false); noFchmodat2.Store(false) })
			}
			root := t.TempDir()
			p := func(n string) string { return filepath.Join(root, n) }
			for _, f := range []struct {
				name string
				mode uint32
			}{{"suid", 0o4755}, {"sgid", 0o2711}, {"capv2", 0o755}, {"capv3", 0o755}, {"acl", 0o640}, {"plain", 0o644}} {
				if err := os.WriteFile(p(f.name), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
				must(t, os.Chown(p(f.name), 1000, 33))
				must(t, os.Chmod(p(f.name), os.FileMode(f.mode&0o777)|modeBits(f.mode)))
			}
			must(t, os.Mkdir(p("dir"), 0o750))
			must(t, os.Chown(p("dir"), 1000, 33))
			must(t, os.Symlink("suid", p("link")))
			must(t, unix.Lsetxattr(p("capv2"), capXattr, testenv.FileCap(false, 0), 0))
			must(t, unix.Lsetxattr(p("capv3"), capXattr, testenv.FileCap(true, 1000), 0))
			must(t, acl.Set(p("acl"), acl.AccessXattr, acl.ACL{{Tag: acl.UserObj, Perm: 6}, {Tag: acl.User, ID: 33, Perm: 6}, {Tag: acl.GroupObj, Perm: 4}, {Tag: acl.Mask, Perm: 6}, {Tag: acl.Other}}))
			must(t, acl.Set(p("dir"), acl.DefaultXattr, acl.ACL{{Tag: acl.UserObj, Perm: 7}, {Tag: acl.GroupObj, Perm: 5}, {Tag: acl.Group, ID: 33, Perm: 5}, {Tag: acl.Mask, Perm: 5}, {Tag: acl.Other}}))

			cnt, err := (&Shift{From: host, To: remapped, CrossMounts: c.cross}).Run(context.Background(), root)
			if err != nil {
				t.Fatal(err)
			}
			if cnt.Seen != 9 || cnt.Changed != 9 || cnt.Errors != 0 {
				t.Fatalf("counts %+v, want 9 seen and changed", cnt)
			}
			for name, mode := range map[string]uint32{"suid": 0o4755, "sgid": 0o2711, "capv2": 0o755, "capv3": 0o755, "acl": 0o660 /* the mask */, "plain": 0o644, "dir": 0o750} {
				var st unix.Stat_t
				must(t, unix.Lstat(p(name), &st))
				if st.Uid != 101000 || st.Gid != 100033 || st.Mode&0o7777 != mode {
					t.Errorf("%s: %d:%d mode %o, want 101000:100033 mode %o", name, st.Uid, st.Gid, st.Mode&0o7777, mode)
				}
			}
			var st unix.Stat_t
			must(t, unix.Lstat(p("link"), &st))
			if st.Uid != 100000 { // created by root
				t.Errorf("the symlink is owned by %d, want 100000", st.Uid)
			}
			if v2 := getCap(t, p("capv2")); binary.LittleEndian.Uint32(v2)&capRevMask != capRev2 {
				t.Errorf("the v2 capability was not restored: %x", v2)
			}
			if v3 := getCap(t, p("capv3")); len(v3) != capV3Length || binary.LittleEndian.Uint32(v3[20:]) != 101000 {
				t.Errorf("the v3 capability's root id was not shifted to 101000: %x", v3)
			}
			if a, err := acl.Get(p("acl"), acl.AccessXattr); err != nil {
				t.Fatal(err)
			} else if _, ok := a.Find(acl.User, 100033); !ok {
				t.Errorf("access ACL %s: want user 100033", a)
			}
			if a, err := acl.Get(p("dir"), acl.DefaultXattr); err != nil {
				t.Fatal(err)
			} else if _, ok := a.Find(acl.Group, 100033); !ok {
				t.Errorf("default ACL %s: want group 100033", a)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func modeBits(m uint32) os.FileMode {
	var b os.FileMode
	if m&0o4000 != 0 {
		b |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		b |= os.ModeSetgid
	}
	return b
}

func getCap(t *testing.T, path string) []byte {
	t.Helper()
	b := make([]byte, 64)
	n, err := unix.Lgetxattr(path, capXattr, b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b[:n]
}

// TestShiftHardlinksOnce gives one inode many names across directories and
// shifts with a mapping whose results are themselves inputs (host 1000+c →
// 2000+c): a name that re-shifted the inode would move it on to 3000+c.
// Parallel workers meet the names in any order; the inode moves once.
func TestShiftHardlinksOnce(t *testing.T) {
	testenv.NeedRoot(t)
	root := t.TempDir()
	first := filepath.Join(root, "first")
	must(t, os.WriteFile(first, nil, 0o644))
	must(t, os.Chown(first, 1033, 1033))
	for d := range 40 {
		dir := filepath.Join(root, "d"+string(rune('a'+d%26))+string(rune('a'+d/26)))
		must(t, os.Mkdir(dir, 0o755))
		for n := range 25 {
			must(t, os.Link(first, filepath.Join(dir, "l"+string(rune('a'+n)))))
		}
	}
	from := idmap.Map{{Container: 0, Host: 1000, Size: 2000}}
	to := idmap.Map{{Container: 0, Host: 2000, Size: 2000}}
	for range 5 { // the race, if any, more than once
		must(t, os.Chown(first, 1033, 1033))
		s := Shift{From: idmap.Mapping{UID: from, GID: from}, To: idmap.Mapping{UID: to, GID: to}, Workers: 8}
		c, err := s.Run(context.Background(), root)
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		must(t, unix.Lstat(first, &st))
		if st.Uid != 2033 || st.Gid != 2033 {
			t.Fatalf("the hardlinked inode is %d:%d, want 2033:2033 (shifted once)", st.Uid, st.Gid)
		}
		if c.Changed != 1 || c.Seen != 1+40+40*25+1 {
			t.Fatalf("counts %+v, want 1 changed of %d seen", c, 1+40+40*25+1)
		}
	}
}

// TestShiftKilledAfterChown stops every entry's shift right after its
// chown, where a kill leaves the kernel's clearing of setuid/setgid bits
// and capabilities not yet undone behind an owner that already looks
// right; a resumed shift (Repair) must put them back, and the ACL entries,
// written before the chown, must already be shifted — once.
func TestShiftKilledAfterChown(t *testing.T) {
	testenv.NeedRoot(t)
	root := t.TempDir()
	p := func(n string) string { return filepath.Join(root, n) }
	for name, mode := range map[string]uint32{"suid": 0o4755, "sgid": 0o2711, "capv3": 0o755, "acl": 0o640} {
		must(t, os.WriteFile(p(name), []byte("x"), 0o600))
		must(t, os.Chown(p(name), 1000, 33))
		must(t, os.Chmod(p(name), os.FileMode(mode&0o777)|modeBits(mode)))
	}
	must(t, unix.Lsetxattr(p("capv3"), capXattr, testenv.FileCap(true, 1000), 0))
	must(t, acl.Set(p("acl"), acl.AccessXattr, acl.ACL{{Tag: acl.UserObj, Perm: 6}, {Tag: acl.User, ID: 33, Perm: 6}, {Tag: acl.GroupObj, Perm: 4}, {Tag: acl.Mask, Perm: 6}, {Tag: acl.Other}}))
	host := idmap.HostIdentity()
	r := idmap.Map{{Container: 0, Host: 100000, Size: 65536}}
	remapped := idmap.Mapping{UID: r, GID: r}

	killed := &Shift{From: host, To: remapped, crashAfterChown: func(e *Entry) bool { return !e.IsDir() }}
	if c, err := killed.Run(context.Background(), root); err == nil || c.Errors != 4 {
		t.Fatalf("the killed shift: %+v, %v; want its 4 files stopped", c, err)
	}
	for _, name := range []string{"suid", "sgid", "capv3"} {
		var st unix.Stat_t
		must(t, unix.Lstat(p(name), &st))
		if st.Uid != 101000 || st.Mode&0o6000 != 0 && name != "sgid" {
			t.Fatalf("%s after the kill: %d mode %o: the chown did not happen as the test assumes", name, st.Uid, st.Mode&0o7777)
		}
		if _, err := unix.Lgetxattr(p(name), restoreXattr, make([]byte, 64)); err != nil {
			t.Errorf("%s after the kill: no restore mark: %v", name, err)
		}
	}

	c, err := (&Shift{From: host, To: remapped, Repair: true}).Run(context.Background(), root)
	if err != nil || c.Changed != 0 {
		t.Fatalf("the resumed shift: %+v, %v; want nothing left to change", c, err)
	}
	for name, mode := range map[string]uint32{"suid": 0o4755, "sgid": 0o2711, "capv3": 0o755, "acl": 0o660} {
		var st unix.Stat_t
		must(t, unix.Lstat(p(name), &st))
		if st.Uid != 101000 || st.Gid != 100033 || st.Mode&0o7777 != mode {
			t.Errorf("%s: %d:%d mode %o, want 101000:100033 mode %o", name, st.Uid, st.Gid, st.Mode&0o7777, mode)
		}
		if _, err := unix.Lgetxattr(p(name), restoreXattr, make([]byte, 64)); err != unix.ENODATA {
			t.Errorf("%s: the restore mark is still there (%v)", name, err)
		}
	}
	if v3 := getCap(t, p("capv3")); len(v3) != capV3Length || binary.LittleEndian.Uint32(v3[20:]) != 101000 {
		t.Errorf("the v3 capability was not restored with its root id shifted to 101000: %x", v3)
	}
	a, err := acl.Get(p("acl"), acl.AccessXattr)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Find(acl.User, 100033); !ok {
		t.Errorf("access ACL %s: want user 100033", a)
	}
}

// TestShiftStayingOwners turns a remap off (--from remapped --to host) on
// a tree where some owners stay: a host user's directory whose ACL grants
// container users access (what `volperm grant` writes), and a file with a
// v3 capability for the container's user. Their owners are no container's
// ids and stay; the ids inside their ACLs and capability move with the
// rest. Entries with nothing of the mapping inside are not written, and a
// second run writes nothing at all.
func TestShiftStayingOwners(t *testing.T) {
	testenv.NeedRoot(t)
	root := t.TempDir()
	p := func(n string) string { return filepath.Join(root, n) }
	must(t, os.Mkdir(p("shared"), 0o750))
	for _, f := range []string{"capfile", "plain", "othergrant", "child"} {
		must(t, os.WriteFile(p(f), []byte("x"), 0o750))
	}
	for _, f := range []string{"shared", "capfile", "plain", "othergrant"} {
		must(t, os.Chown(p(f), 1000, 1000))
	}
	must(t, os.Chown(p("child"), 100033, 100033))
	grant := func(tag acl.Tag, id uint32) acl.ACL {
		return acl.ACL{{Tag: acl.UserObj, Perm: 7}, {Tag: tag, ID: id, Perm: 7}, {Tag: acl.GroupObj, Perm: 5}, {Tag: acl.Mask, Perm: 7}, {Tag: acl.Other}}
	}
	must(t, acl.Set(p("shared"), acl.AccessXattr, grant(acl.User, 100033)))
	must(t, acl.Set(p("shared"), acl.DefaultXattr, grant(acl.Group, 100033)))
	must(t, acl.Set(p("othergrant"), acl.AccessXattr, grant(acl.User, 5000))) // no container's id
	must(t, acl.Set(p("child"), acl.AccessXattr, grant(acl.User, 100033)))
	must(t, unix.Lsetxattr(p("capfile"), capXattr, testenv.FileCap(true, 101000), 0))
	must(t, os.Link(p("capfile"), p("caplink"))) // shifted through one name: the other finds it done
	r := idmap.Map{{Container: 0, Host: 100000, Size: 65536}}
	remapped, host := idmap.Mapping{UID: r, GID: r}, idmap.HostIdentity()
	before := statAll(t, root)

	dry, err := (&Shift{From: remapped, To: host, Staying: true, DryRun: true}).Run(context.Background(), root)
	if err != nil || dry.Changed != 3 {
		t.Fatalf("dry run: %+v, %v; want 3 would change (shared, capfile, child)", dry, err)
	}
	if after := statAll(t, root); !maps.Equal(before, after) {
		t.Fatal("the dry run wrote")
	}

	c, err := (&Shift{From: remapped, To: host, Staying: true}).Run(context.Background(), root)
	if err != nil || c.Changed != 3 || c.Seen != 7 {
		t.Fatalf("counts %+v, %v; want 3 changed of 7 seen", c, err)
	}
	for f, want := range map[string]uint32{"shared": 1000, "capfile": 1000, "plain": 1000, "othergrant": 1000, "child": 33} {
		var st unix.Stat_t
		must(t, unix.Lstat(p(f), &st))
		if st.Uid != want || st.Gid != want {
			t.Errorf("%s: %d:%d, want %d:%d", f, st.Uid, st.Gid, want, want)
		}
	}
	for _, w := range []struct {
		file, xattr string
		tag         acl.Tag
		id          uint32
	}{
		{"shared", acl.AccessXattr, acl.User, 33},
		{"shared", acl.DefaultXattr, acl.Group, 33},
		{"child", acl.AccessXattr, acl.User, 33},
		{"othergrant", acl.AccessXattr, acl.User, 5000},
	} {
		a, err := acl.Get(p(w.file), w.xattr)
		must(t, err)
		if _, ok := a.Find(w.tag, w.id); !ok || len(a) != 5 {
			t.Errorf("%s %s: %s, want the entry for %d", w.file, w.xattr, a, w.id)
		}
	}
	if v3 := getCap(t, p("capfile")); len(v3) != capV3Length || binary.LittleEndian.Uint32(v3[20:]) != 1000 {
		t.Errorf("the capability's root id was not shifted to 1000: %x", v3)
	}
	after := statAll(t, root)
	for _, f := range []string{"plain", "othergrant"} {
		if after[f] != before[f] {
			t.Errorf("%s has nothing of the mapping in it but was written", f)
		}
	}

	again, err := (&Shift{From: remapped, To: host, Staying: true}).Run(context.Background(), root)
	if err != nil || again.Changed != 0 {
		t.Fatalf("second run: %+v, %v; want nothing changed", again, err)
	}
	if a2 := statAll(t, root); !maps.Equal(after, a2) {
		t.Error("the second run wrote")
	}
}

// statAll maps each name under root to its owner and change time.
func statAll(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	ents, err := os.ReadDir(root)
	must(t, err)
	for _, e := range ents {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(root, e.Name()), &st))
		m[e.Name()] = fmt.Sprint(st.Uid, st.Gid, st.Ctim)
	}
	return m
}
