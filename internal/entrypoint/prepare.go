package entrypoint

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/tree"
)

// defaultSocket is where images and compose files mount the docker socket;
// in many images /var/run is a symlink to /run, which Stat follows.
const defaultSocket = "/var/run/docker.sock"

// movedIDs is where an account that holds the target uid (or a group that
// must give up a gid) is moved: the lowest free id from here, above the
// system and first-user ranges an image's own accounts use.
const movedIDs = 10000

// target is who the command runs as, once the files agree.
type target struct {
	name       string // "" for a uid with no account
	uid, gid   uint32
	groups     []uint32 // supplementary groups, the primary gid first
	home       string
	notes      []string // what was changed, for the log
	chownCount int64
}

// env returns the command's environment: environ with HOME, USER and
// LOGNAME set for the target.
func (t *target) env(environ []string) []string {
	user := t.name
	if user == "" {
		user = strconv.FormatUint(uint64(t.uid), 10)
	}
	set := map[string]string{"HOME": t.home, "USER": user, "LOGNAME": user}
	out := make([]string, 0, len(environ)+len(set))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; ok {
			continue
		}
		out = append(out, kv)
	}
	for _, k := range []string{"HOME", "USER", "LOGNAME"} {
		out = append(out, k+"="+set[k])
	}
	return out
}

// preparer makes the container's files agree with the target ids. root
// is "/" in a container and a temporary directory in unit tests.
type preparer struct {
	root string
	// startGroups are the supplementary groups volperm started with:
	// root's own plus the --group-add ones.
	startGroups []uint32
	// commit is writePair, replaceable to test interrupted writes.
	commit func(files ...*etcFile) (pending, error)
	// ns is the container's user namespace mapping; nil or the identity
	// when ids are not remapped.
	ns *idmap.Mapping
	// mounts are the mount points (as mountPoints returns them): what is
	// mounted into the container is not the image's, and is re-owned
	// only when --chown names it.
	mounts map[string]bool
}

// path is p inside the root.
func (p *preparer) path(s string) string { return filepath.Join(p.root, s) }

// prepare edits /etc/passwd and /etc/group, re-owns the home and the
// --chown trees, and returns the target. Any error leaves both files as
// they were.
func (p *preparer) prepare(ctx context.Context, o options) (*target, error) {
	passwd, err := p.readEtc("/etc/passwd", 7)
	if err != nil {
		return nil, err
	}
	group, err := p.readEtc("/etc/group", 4)
	if err != nil {
		return nil, err
	}
	t := &target{home: "/"}

	// The account and the ids it has today.
	userPart, groupPart, hasGroup := strings.Cut(o.user, ":")
	acct := passwd.byName(userPart)
	numeric, numErr := parseID(userPart)
	if acct < 0 && numErr == nil {
		acct = passwd.byID(numeric, -1)
	}
	var oldUID, oldGID uint32
	switch {
	case acct >= 0:
		fs, _ := passwd.entry(acct)
		t.name = fs[0]
		if filepath.IsAbs(fs[5]) {
			t.home = filepath.Clean(fs[5]) // an empty or relative home is "/", as login makes it
		}
		oldUID = passwd.id(fs)
		g, _ := strconv.ParseUint(fs[3], 10, 32)
		oldGID = uint32(g)
	case numErr == nil:
		// As docker run --user UID: no account, group 0, home /.
		oldUID, oldGID = numeric, 0
	default:
		return nil, fmt.Errorf("user %q: no such account in %s", userPart, passwd.path)
	}

	// The ids the command will have, and where they come from.
	newUID, newGID := oldUID, oldGID
	gidFromFile := false // the account's primary gid changes, not just the process's
	var matched *syscall.Stat_t
	if o.match != "" {
		fi, err := os.Stat(p.path(o.match))
		if err != nil {
			return nil, fmt.Errorf("--match %s: %w", o.match, describe(err))
		}
		matched = fi.Sys().(*syscall.Stat_t)
		if err := p.checkMapped(o.match, matched); err != nil {
			return nil, err
		}
		newUID, newGID, gidFromFile = matched.Uid, matched.Gid, true
	}
	if hasGroup {
		gid, err := resolveGroup(group, groupPart)
		if err != nil {
			return nil, err
		}
		newGID, gidFromFile = gid, false
	}
	if o.uid >= 0 {
		newUID = uint32(o.uid)
	}
	if o.gid >= 0 {
		newGID, gidFromFile = uint32(o.gid), true
	}
	if newUID == 0 && !o.allowRoot {
		why := "user " + o.user + " is uid 0"
		switch {
		case o.uid == 0:
			why = "--uid 0 was given"
		case matched != nil:
			why = o.match + " is owned by uid 0 (a bind source Docker had to create is root's: create it on the host as the user that should own it, or run volperm fix)"
		}
		return nil, fmt.Errorf("refusing to run the command as root: %s; pass --allow-root if that is intended", why)
	}
	if acct >= 0 && oldUID == 0 && (newUID != 0 || (gidFromFile && newGID != oldGID)) {
		return nil, fmt.Errorf("user %s is root (uid 0): volperm does not give root other ids; run the command as the image's own user", o.user)
	}
	t.uid, t.gid = newUID, newGID

	// Make the account carry the new ids. Uid 0 is never taken from
	// root: with --allow-root the command simply runs as root.
	if newUID == 0 && oldUID != 0 {
		acct, t.name, t.home = -1, "root", "/root"
		if i := passwd.byID(0, -1); i >= 0 {
			fs, _ := passwd.entry(i)
			t.name = fs[0]
			if filepath.IsAbs(fs[5]) {
				t.home = filepath.Clean(fs[5])
			}
		}
	}
	if acct >= 0 && newUID != oldUID {
		for other := passwd.byID(newUID, acct); other >= 0; other = passwd.byID(newUID, acct) {
			ofs, _ := passwd.entry(other)
			moved := passwd.freeID(movedIDs)
			passwd.set(other, 2, strconv.FormatUint(uint64(moved), 10))
			t.notes = append(t.notes, fmt.Sprintf("uid %d belonged to %s, which now has uid %d", newUID, ofs[0], moved))
		}
		passwd.set(acct, 2, strconv.FormatUint(uint64(newUID), 10))
		t.notes = append(t.notes, fmt.Sprintf("%s: uid %d -> %d", t.name, oldUID, newUID))
	}
	// Files of the old gid are re-grouped only when that gid is the
	// account's own: gid 0 or a group that is another account's primary
	// group (users, 100) holds files that are not the account's.
	regroup := false
	if acct >= 0 && gidFromFile && newGID != oldGID {
		regroup = oldGID != 0 && !sharedPrimary(passwd, acct, oldGID) && ownGroup(group, oldGID, t.name)
		t.notes = append(t.notes, primaryGroup(passwd, group, acct, t.name, oldGID, newGID))
	}

	// The docker socket's group.
	socketGID, hasSocket, err := p.socket(o.socket, t)
	if err != nil {
		return nil, err
	}
	if hasSocket && t.name != "" && socketGID != newGID {
		t.notes = append(t.notes, joinGroup(group, t.name, socketGID)...)
	}

	// Supplementary groups: the account's memberships, as Docker computes
	// them, then what docker run --group-add gave, then the socket's.
	t.groups = []uint32{newGID}
	if t.name != "" {
		for i := range group.lines {
			if fs, ok := group.entry(i); ok && contains(members(fs), t.name) {
				t.groups = append(t.groups, group.id(fs))
			}
		}
	}
	t.groups = append(t.groups, groupAdd(group, p.startGroups)...)
	if hasSocket {
		t.groups = append(t.groups, socketGID)
	}
	t.groups = dedupe(t.groups)

	// Write both files (not yet in place), re-own, then put them in place:
	// a read-only /etc fails before anything changed, and a run that dies
	// while re-owning is finished by the next, which still sees the old
	// ids in /etc/passwd.
	var pend pending
	if passwd.edited || group.edited {
		for _, f := range []*etcFile{group, passwd} {
			if f.edited && p.mounts[f.path] {
				return nil, fmt.Errorf("%s is a mount (bind-mounted into the container): volperm cannot replace it, and editing the host's file would be wrong; drop that mount and let volperm edit the image's own file", f.path)
			}
		}
		if pend, err = p.commit(group, passwd); err != nil {
			return nil, err
		}
		defer pend.abort()
	}
	if acct >= 0 && (newUID != oldUID || regroup) {
		if err := p.chown(ctx, o, t, oldUID, oldGID, regroup); err != nil {
			return nil, err
		}
	}
	if pend != nil {
		if err := pend.finish(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// checkMapped refuses a --match path whose owner the container cannot
// see: under a userns-remap a host id outside the container's range shows
// as the overflow id, and taking that id would help nobody.
func (p *preparer) checkMapped(path string, st *syscall.Stat_t) error {
	if p.ns == nil || p.ns.IsIdentity() {
		return nil
	}
	for _, c := range []struct {
		what string
		id   uint32
		m    idmap.Map
	}{{"uid", st.Uid, p.ns.UID}, {"gid", st.Gid, p.ns.GID}} {
		if _, ok := c.m.ToHost(c.id); (ok && c.id != idmap.Overflow) || len(c.m) == 0 {
			continue
		}
		lo, hi := c.m[0].Host, uint64(c.m[0].Host)+uint64(c.m[0].Size)-1
		return fmt.Errorf("--match %s shows as %s %d: its host owner is outside this container's user namespace (container %ss 0-%d are host %ss %d-%d); on the host, give it to the host ids of the container user (volperm map tells which)",
			path, c.what, c.id, c.what, c.m[0].Size-1, c.what, lo, hi)
	}
	return nil
}

// unmappedGID reports a gid that shows as the overflow id of a remapped
// user namespace: a host group the container cannot name.
func (p *preparer) unmappedGID(gid uint32) bool {
	return p.ns != nil && !p.ns.IsIdentity() && gid == idmap.Overflow
}

func (p *preparer) readEtc(name string, fields int) (*etcFile, error) {
	path := p.path(name)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, describe(err))
	}
	return parseEtc(path, data, fields), nil
}

func resolveGroup(group *etcFile, spec string) (uint32, error) {
	if i := group.byName(spec); i >= 0 {
		fs, _ := group.entry(i)
		return group.id(fs), nil
	}
	if n, err := parseID(spec); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("group %q: no such group in %s", spec, group.path)
}

// primaryGroup gives the account at acct the primary gid newGID: an
// existing group with that gid is shared; otherwise the account's own
// group (named like it and nobody else's primary group) takes the new gid,
// or a new group is made.
func primaryGroup(passwd, group *etcFile, acct int, name string, oldGID, newGID uint32) string {
	passwd.set(acct, 3, strconv.FormatUint(uint64(newGID), 10))
	if i := group.byID(newGID, -1); i >= 0 {
		fs, _ := group.entry(i)
		return fmt.Sprintf("%s: primary gid %d -> %d (the existing group %s)", name, oldGID, newGID, fs[0])
	}
	if own := group.byID(oldGID, -1); own >= 0 {
		fs, _ := group.entry(own)
		if fs[0] == name && !sharedPrimary(passwd, acct, oldGID) {
			group.set(own, 2, strconv.FormatUint(uint64(newGID), 10))
			return fmt.Sprintf("%s: gid %d -> %d (group %s)", name, oldGID, newGID, name)
		}
	}
	gname := name
	if group.byName(gname) >= 0 {
		gname = fmt.Sprintf("%s-%d", name, newGID)
	}
	group.add(gname, "x", strconv.FormatUint(uint64(newGID), 10), "")
	return fmt.Sprintf("%s: primary gid %d -> %d (new group %s)", name, oldGID, newGID, gname)
}

// ownGroup reports whether gid is the account's personal group: named
// like it, or with no name at all.
func ownGroup(group *etcFile, gid uint32, name string) bool {
	i := group.byID(gid, -1)
	if i < 0 {
		return true
	}
	fs, _ := group.entry(i)
	return fs[0] == name
}

// sharedPrimary reports whether another account has gid as its primary
// group, which must then keep it.
func sharedPrimary(passwd *etcFile, acct int, gid uint32) bool {
	for i := range passwd.lines {
		if fs, ok := passwd.entry(i); ok && i != acct && fs[3] == strconv.FormatUint(uint64(gid), 10) {
			return true
		}
	}
	return false
}

// socket finds the docker socket and its group. With "auto", a missing
// socket is not an error; a directory where the socket should be is
// reported, since it means the host had no socket at the bind's source.
func (p *preparer) socket(spec string, t *target) (uint32, bool, error) {
	if spec == "none" {
		return 0, false, nil
	}
	path, auto := spec, spec == "auto"
	if auto {
		path = defaultSocket
	}
	fi, err := os.Stat(p.path(path))
	switch {
	case auto && errors.Is(err, fs.ErrNotExist):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("--docker-socket %s: %w", path, describe(err))
	case fi.Mode().Type() != fs.ModeSocket:
		msg := fmt.Sprintf("%s is a %s, not a socket: the bind source did not exist on the host, so Docker created a directory there; is the daemon's socket elsewhere?", path, kind(fi.Mode()))
		if auto {
			t.notes = append(t.notes, "warning: "+msg)
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("--docker-socket %s", msg)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm()&0o060 != 0o060 {
		t.notes = append(t.notes, fmt.Sprintf("warning: %s is mode %04o: its group cannot read and write it, so joining gid %d does not help; fix the mode on the host (0660, never 0666)", path, fi.Mode().Perm(), st.Gid))
	}
	if p.unmappedGID(st.Gid) {
		t.notes = append(t.notes, fmt.Sprintf("warning: %s shows as gid %d: its host group is outside this container's user namespace (userns-remap), so no group inside can reach it; run this container with --userns=host to use the socket", path, st.Gid))
		return 0, false, nil
	}
	if st.Gid == 0 {
		t.notes = append(t.notes, fmt.Sprintf("warning: %s belongs to group 0 (root): not joining the root group; give the socket the host's docker group instead", path))
		return 0, false, nil
	}
	return st.Gid, true, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	}
	return "special file"
}

// joinGroup makes name a member of the group with gid, creating a group
// named docker-host for it when the image has none.
func joinGroup(group *etcFile, name string, gid uint32) []string {
	i := group.byID(gid, -1)
	var notes []string
	if i < 0 {
		gname := "docker-host"
		if group.byName(gname) >= 0 {
			gname = fmt.Sprintf("docker-host-%d", gid)
		}
		group.add(gname, "x", strconv.FormatUint(uint64(gid), 10), "")
		i = len(group.lines) - 1
		notes = append(notes, fmt.Sprintf("new group %s (gid %d) for the docker socket", gname, gid))
	}
	fs, _ := group.entry(i)
	if m := members(fs); !contains(m, name) {
		group.set(i, 3, strings.Join(append(m, name), ","))
		notes = append(notes, fmt.Sprintf("%s joins group %s (gid %d) of the docker socket", name, fs[0], gid))
	}
	return notes
}

// groupAdd returns the groups given with docker run --group-add: those
// volperm started with, less root's primary group and root's memberships,
// which Docker adds for root.
func groupAdd(group *etcFile, start []uint32) []uint32 {
	var out []uint32
	for _, g := range start {
		if g == 0 {
			continue
		}
		rootMember := false
		for i := range group.lines {
			if fs, ok := group.entry(i); ok && group.id(fs) == g && contains(members(fs), "root") {
				rootMember = true
			}
		}
		if !rootMember {
			out = append(out, g)
		}
	}
	return out
}

func dedupe(ids []uint32) []uint32 {
	out := ids[:0]
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// chown re-owns what the account's old ids own in its home and the
// --chown trees, keeping setuid bits, capabilities and ACLs (the tree
// package's shift), never following a symlink or leaving the filesystem.
func (p *preparer) chown(ctx context.Context, o options, t *target, oldUID, oldGID uint32, gidChanged bool) error {
	to := idmap.Mapping{UID: idmap.Identity(), GID: idmap.Identity()}
	if t.uid != oldUID {
		to.UID = append(idmap.Map{{Container: oldUID, Host: t.uid, Size: 1}}, to.UID...)
	}
	if gidChanged && t.gid != oldGID {
		to.GID = append(idmap.Map{{Container: oldGID, Host: t.gid, Size: 1}}, to.GID...)
	}
	var roots []string
	if h := t.home; h != "/" {
		// A home that is a mount (a bind mount from the host, a volume)
		// holds files that are not the image's: another host user's
		// files there must not become the container user's. Only an
		// explicit --chown re-owns such a tree.
		fi, err := os.Lstat(p.path(h))
		rootFS, rerr := os.Lstat(p.path("/"))
		switch {
		case err != nil || !fi.IsDir() || rerr != nil:
		case p.mounts[p.path(h)] || fi.Sys().(*syscall.Stat_t).Dev != rootFS.Sys().(*syscall.Stat_t).Dev:
			if !slices.Contains(o.chown, h) {
				t.notes = append(t.notes, fmt.Sprintf("home %s is a mount: not re-owned (add --chown %s to re-own what uid %d owns there)", h, h, oldUID))
			}
		default:
			roots = append(roots, h)
		}
	}
	for _, c := range o.chown {
		if _, err := os.Lstat(p.path(c)); err != nil {
			return fmt.Errorf("--chown %s: %w", c, describe(err))
		}
		roots = append(roots, filepath.Clean(c))
	}
	// Mounts below a root (a bind mount under the home) are left alone,
	// even on the same device, unless --chown names them.
	named := map[string]bool{}
	for _, r := range roots {
		named[p.path(r)] = true
	}
	skip := map[tree.FileID]bool{}
	for _, r := range roots {
		for _, m := range below(p.mounts, p.path(r)) {
			var st syscall.Stat_t
			if named[m] || syscall.Lstat(m, &st) != nil {
				continue
			}
			skip[tree.FileID{Dev: st.Dev, Ino: st.Ino}] = true
		}
	}
	for _, r := range roots {
		// Repair: a start killed mid-way left /etc unedited, so this runs
		// again and finishes any file stopped between chown and restore.
		s := tree.Shift{From: idmap.HostIdentity(), To: to, Skip: skip, Repair: true}
		c, err := s.Run(ctx, p.path(r))
		if err != nil {
			return fmt.Errorf("re-owning %s: %w", r, err)
		}
		t.chownCount += c.Changed
		if c.Changed > 0 {
			t.notes = append(t.notes, fmt.Sprintf("re-owned %s under %s", plural(c.Changed, "entry", "entries"), r))
		}
	}
	return nil
}

// describe turns an errno into a fact a user can act on.
func describe(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, syscall.ENOENT):
		return errors.New("no such file or directory")
	case errors.Is(err, syscall.EROFS):
		return errors.New("read-only file system (a container started with --read-only, or /etc mounted read-only): bake the ids into the image instead, or give the container a writable /etc")
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w (is volperm running as root, with the default capabilities?)", err)
	}
	return err
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
