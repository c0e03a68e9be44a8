package plan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/acl"
)

// errnoFact turns an errno into something a user can act on.
func errnoFact(op, path string, err error) error {
	switch {
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("%s %s: the filesystem is mounted read-only (EROFS): remount it read-write or fix it where it is writable", op, path)
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%s %s: the filesystem does not support POSIX ACLs (EOPNOTSUPP): use the owner fix (--strategy owner) instead", op, path)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s %s: operation not permitted (EPERM): not root, an immutable file, or root squashed on NFS", op, path)
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

// lstatNoLink stats path and refuses a symlink: a step never acts through
// one, because the link may point anywhere on the host.
func lstatNoLink(path string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		target, _ := os.Readlink(path)
		return nil, fmt.Errorf("%s is a symlink (to %s): refusing to act through it; give the real path", path, target)
	}
	return &st, nil
}

// Mkdir creates a directory (and missing parents, root-owned 0755 like the
// daemon would) with the given owner and mode, or fixes an existing one.
type Mkdir struct {
	Path     string
	UID, GID uint32
	Mode     uint32 // permission bits; o+w is stripped
}

func (m Mkdir) mode() uint32 { return m.Mode &^ 0o002 & 0o7777 }

// Describe implements Step.
func (m Mkdir) Describe() string {
	return fmt.Sprintf("create %s owned by %d:%d, mode %04o", m.Path, m.UID, m.GID, m.mode())
}

// Shell implements Step.
func (m Mkdir) Shell() string {
	return fmt.Sprintf("install -d -o %d -g %d -m %04o %s", m.UID, m.GID, m.mode(), Quote(m.Path))
}

// Apply implements Step.
func (m Mkdir) Apply() (bool, error) {
	st, err := lstatNoLink(m.Path)
	changed := false
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(m.Path), 0o755); err != nil {
			return false, errnoFact("creating the parents of", m.Path, err)
		}
		if err := unix.Mkdir(m.Path, m.mode()&0o777); err != nil {
			return false, errnoFact("creating", m.Path, err)
		}
		if st, err = lstatNoLink(m.Path); err != nil {
			return false, err
		}
		changed = true
	} else if err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false, fmt.Errorf("%s exists and is not a directory", m.Path)
	}
	c, err := setOwnerMode(m.Path, st, m.UID, m.GID, m.mode(), true)
	return changed || c, err
}

// setOwnerMode sets owner and (with setMode) the permission bits, touching
// nothing that already matches.
func setOwnerMode(path string, st *unix.Stat_t, uid, gid, mode uint32, setMode bool) (bool, error) {
	changed := false
	if st.Uid != uid || st.Gid != gid {
		if err := unix.Lchown(path, int(uid), int(gid)); err != nil {
			return false, errnoFact("changing the owner of", path, err)
		}
		changed = true
		// chown clears setuid/setgid on files; put back what was there.
		if !setMode && st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Mode&0o6000 != 0 {
			if err := unix.Chmod(path, st.Mode&0o7777); err != nil {
				return changed, errnoFact("restoring the mode of", path, err)
			}
		}
	}
	if setMode && st.Mode&0o7777 != mode {
		if err := unix.Chmod(path, mode); err != nil {
			return changed, errnoFact("changing the mode of", path, err)
		}
		changed = true
	}
	return changed, nil
}

// Chown makes uid:gid the owner of an existing path.
type Chown struct {
	Path     string
	UID, GID uint32
}

// Describe implements Step.
func (c Chown) Describe() string {
	return fmt.Sprintf("make %d:%d the owner of %s", c.UID, c.GID, c.Path)
}

// Shell implements Step.
func (c Chown) Shell() string { return fmt.Sprintf("chown %d:%d %s", c.UID, c.GID, Quote(c.Path)) }

// Apply implements Step.
func (c Chown) Apply() (bool, error) {
	if err := CheckOwnable(c.Path); err != nil {
		return false, err
	}
	st, err := lstatNoLink(c.Path)
	if err != nil {
		return false, errnoFact("reading", c.Path, err)
	}
	return setOwnerMode(c.Path, st, c.UID, c.GID, 0, false)
}

// Chmod changes permission bits: Clear bits are removed and Set bits added.
// Set never grants anything to others.
type Chmod struct {
	Path       string
	Set, Clear uint32
}

// Describe implements Step.
func (c Chmod) Describe() string {
	return fmt.Sprintf("change the mode of %s (%s)", c.Path, c.symbolic())
}

func (c Chmod) set() uint32 { return c.Set &^ 0o007 }

func (c Chmod) symbolic() string {
	var parts []string
	who := []struct {
		name  string
		shift uint
	}{{"u", 6}, {"g", 3}, {"o", 0}}
	for _, w := range who {
		for _, op := range []struct {
			sign string
			bits uint32
		}{{"-", c.Clear}, {"+", c.set()}} {
			s := ""
			for i, ch := range "rwx" {
				if op.bits>>(w.shift+uint(2-i))&1 == 1 {
					s += string(ch)
				}
			}
			if w.name == "g" && op.bits&0o2000 != 0 {
				s += "s"
			}
			if s != "" {
				parts = append(parts, w.name+op.sign+s)
			}
		}
	}
	return strings.Join(parts, ",")
}

// Shell implements Step.
func (c Chmod) Shell() string {
	if c.symbolic() == "" {
		return ""
	}
	return fmt.Sprintf("chmod %s %s", c.symbolic(), Quote(c.Path))
}

// Apply implements Step.
func (c Chmod) Apply() (bool, error) {
	st, err := lstatNoLink(c.Path)
	if err != nil {
		return false, errnoFact("reading", c.Path, err)
	}
	mode := (st.Mode&0o7777)&^c.Clear | c.set()
	if mode == st.Mode&0o7777 {
		return false, nil
	}
	if err := unix.Chmod(c.Path, mode); err != nil {
		return false, errnoFact("changing the mode of", c.Path, err)
	}
	return true, nil
}

// Chgrp makes gid the group of a path.
type Chgrp struct {
	Path string
	GID  uint32
}

// Describe implements Step.
func (c Chgrp) Describe() string { return fmt.Sprintf("make gid %d the group of %s", c.GID, c.Path) }

// Shell implements Step.
func (c Chgrp) Shell() string { return fmt.Sprintf("chgrp %d %s", c.GID, Quote(c.Path)) }

// Apply implements Step.
func (c Chgrp) Apply() (bool, error) {
	if err := CheckOwnable(c.Path); err != nil {
		return false, err
	}
	st, err := lstatNoLink(c.Path)
	if err != nil {
		return false, errnoFact("reading", c.Path, err)
	}
	return setOwnerMode(c.Path, st, st.Uid, c.GID, 0, false)
}

// Grant adds a named ACL entry (and with Default, the same default entry
// on a directory), with capital-X semantics: execute only for directories
// and files that some class may already execute. The mask is recomputed
// as setfacl does, the union of the group class.
type Grant struct {
	Path    string
	ID      uint32
	Group   bool
	Perm    string // "rwX", "rX", "rw", ...
	Default bool
}

func (g Grant) tag() acl.Tag {
	if g.Group {
		return acl.Group
	}
	return acl.User
}

func (g Grant) spec(def bool) string {
	t := "u"
	if g.Group {
		t = "g"
	}
	if def {
		t = "d:" + t
	}
	return fmt.Sprintf("%s:%d:%s", t, g.ID, g.Perm)
}

// Describe implements Step.
func (g Grant) Describe() string {
	who := "uid"
	if g.Group {
		who = "gid"
	}
	d := ""
	if g.Default {
		d = ", and the same for new files (default ACL)"
	}
	return fmt.Sprintf("grant %s %d %s on %s with a POSIX ACL%s", who, g.ID, g.Perm, g.Path, d)
}

// Shell implements Step.
func (g Grant) Shell() string {
	spec := g.spec(false)
	if g.Default {
		spec += "," + g.spec(true)
	}
	return fmt.Sprintf("setfacl -m %s %s", spec, Quote(g.Path))
}

// Apply implements Step.
func (g Grant) Apply() (bool, error) {
	st, err := lstatNoLink(g.Path)
	if err != nil {
		return false, errnoFact("reading", g.Path, err)
	}
	dir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	perm := PermBits(g.Perm, dir, st.Mode)
	changed, err := SetEntry(g.Path, acl.AccessXattr, st.Mode, g.tag(), g.ID, perm, false)
	if err != nil || !g.Default || !dir {
		return changed, err
	}
	c, err := SetEntry(g.Path, acl.DefaultXattr, st.Mode, g.tag(), g.ID, PermBits(g.Perm, true, st.Mode), false)
	return changed || c, err
}

// PermBits turns "rwX" into bits for a file with mode: X is x only for a
// directory or a file with an execute bit.
func PermBits(spec string, dir bool, mode uint32) uint16 {
	var p uint16
	for _, c := range spec {
		switch c {
		case 'r':
			p |= acl.Read
		case 'w':
			p |= acl.Write
		case 'x':
			p |= acl.Execute
		case 'X':
			if dir || mode&0o111 != 0 {
				p |= acl.Execute
			}
		}
	}
	return p
}

// SetEntry sets (or with remove, deletes) a named entry in the access or
// default ACL of path and recomputes the mask; it writes nothing when the
// ACL already says so. A missing access ACL starts from the mode bits; a
// missing default ACL from the access ACL's base entries, as setfacl does.
func SetEntry(path, xattr string, mode uint32, tag acl.Tag, id uint32, perm uint16, remove bool) (bool, error) {
	changed, err := EditACL(ACLFile{
		Get: func(x string) (acl.ACL, error) { return acl.Get(path, x) },
		Set: func(x string, a acl.ACL) error { return acl.Set(path, x, a) },
	}, xattr, mode, tag, id, perm, remove)
	if err != nil {
		return changed, errnoFact("setting the ACL of", path, err)
	}
	return changed, nil
}

// ACLFile reads and writes one file's ACLs, by path or by descriptor.
type ACLFile struct {
	Get func(xattr string) (acl.ACL, error)
	Set func(xattr string, a acl.ACL) error
}

// EditACL is SetEntry over any ACLFile.
func EditACL(f ACLFile, xattr string, mode uint32, tag acl.Tag, id uint32, perm uint16, remove bool) (bool, error) {
	cur, err := f.Get(xattr)
	if err != nil {
		return false, err
	}
	base := cur
	if base == nil {
		if remove {
			return false, nil
		}
		base = acl.FromMode(mode)
		if xattr == acl.DefaultXattr {
			if access, err := f.Get(acl.AccessXattr); err == nil && access != nil {
				base = access
			}
		}
	}
	next := make(acl.ACL, 0, len(base)+2)
	found := false
	for _, e := range base {
		if e.Tag == tag && e.ID == id {
			found = true
			if remove {
				continue
			}
			e.Perm = perm
		}
		next = append(next, e)
	}
	if !found && !remove {
		next = append(next, acl.Entry{Tag: tag, ID: id, Perm: perm})
	}
	next = withMask(next)
	if cur != nil && cur.Sorted().String() == next.Sorted().String() {
		return false, nil
	}
	return true, f.Set(xattr, next)
}

// withMask recomputes the mask as the union of the group class, adding or
// dropping the mask entry as the named entries require.
func withMask(a acl.ACL) acl.ACL {
	var union uint16
	named := false
	out := make(acl.ACL, 0, len(a)+1)
	for _, e := range a {
		switch e.Tag {
		case acl.Mask:
			continue
		case acl.User, acl.Group:
			named = true
			union |= e.Perm
		case acl.GroupObj:
			union |= e.Perm
		}
		out = append(out, e)
	}
	if named {
		out = append(out, acl.Entry{Tag: acl.Mask, Perm: union, ID: acl.UndefinedID})
	}
	return out.Sorted()
}
