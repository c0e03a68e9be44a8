package tree

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/acl"
	"github.com/volperm/volperm/internal/idmap"
)

// Shift re-owns a tree from one id mapping to another: each owner is read
// as a host id under From, turned into the container id, then into the
// host id under To. Unlike chown -R it keeps setuid/setgid bits and file
// capabilities (a v3 capability's root id shifted too), shifts the ids in
// ACL entries, changes a hardlinked inode once, never follows a symlink,
// stays on one filesystem, and does not touch an entry already right.
type Shift struct {
	From, To    idmap.Mapping
	DryRun      bool
	CrossMounts bool
	Skip        map[FileID]bool // entries left alone: see Options.Skip
	Workers     int
	// Progress, when set, is called now and then with the counts so far.
	Progress func(Counts)
	// Repair also reads the extended attributes of entries that need no
	// change, to finish those an interrupted shift left between its chown
	// and the restoring of what the chown cleared (see restoreXattr). A
	// resumed shift sets it.
	Repair bool
	// Staying also shifts the ids inside the ACLs and file capability of
	// entries whose owner stays: owned by ids the mapping leaves alone
	// (a host user's directory with ACL entries for container users), or
	// by ids it maps onto themselves. It costs such an entry a listxattr,
	// which a rerun of a completed shift need not pay: a shift handles
	// them in its first run.
	Staying bool

	// crashAfterChown, in tests, stops an entry's shift right after its
	// chown, as a kill would.
	crashAfterChown func(*Entry) bool

	// noXattrs is 1 + the device whose filesystem said it keeps no
	// extended attributes (EOPNOTSUPP): its entries are not asked again.
	noXattrs atomic.Uint64
}

// Counts summarise a shift: Seen and Unmapped count names, Changed and
// Errors inodes (a hardlinked inode is changed once).
type Counts struct {
	Seen, Changed, Unmapped, Errors int64
}

// counters are kept per worker, each on its own cache lines, so that
// counting does not make the workers contend.
type counters struct {
	w []workerCount
}

type workerCount struct {
	seen, changed, unmapped, errors atomic.Int64
	buf                             []byte // listxattr buffer
	_                               [64]byte
}

func (c *counters) snapshot() Counts {
	var t Counts
	for i := range c.w {
		w := &c.w[i]
		t.Seen += w.seen.Load()
		t.Changed += w.changed.Load()
		t.Unmapped += w.unmapped.Load()
		t.Errors += w.errors.Load()
	}
	return t
}

// shiftID maps one host id; ok is false when From does not map it (the id
// is left alone and counted) or To has no host id for it.
func shiftID(from, to idmap.Map, id uint32) (uint32, bool) {
	c, ok := from.ToContainer(id)
	if !ok {
		return id, false
	}
	h, ok := to.ToHost(c)
	if !ok {
		return id, false
	}
	return h, true
}

// Ambiguous reports host ids that are both a result of the shift and an
// input it would move elsewhere: after an interrupted run such an id
// cannot be told shifted from not yet shifted.
func Ambiguous(from, to idmap.Map) (lo, hi uint32, found bool) {
	type span struct{ a, b uint64 } // [a, b)
	var inputs, outputs []span
	for _, f := range from {
		for _, t := range to {
			ca := max(uint64(f.Container), uint64(t.Container))
			cb := min(uint64(f.Container)+uint64(f.Size), uint64(t.Container)+uint64(t.Size))
			if ca >= cb {
				continue
			}
			in := span{uint64(f.Host) + ca - uint64(f.Container), uint64(f.Host) + cb - uint64(f.Container)}
			out := span{uint64(t.Host) + ca - uint64(t.Container), uint64(t.Host) + cb - uint64(t.Container)}
			if in == out {
				continue // these ids stay as they are
			}
			inputs, outputs = append(inputs, in), append(outputs, out)
		}
	}
	for _, o := range outputs {
		for _, i := range inputs {
			if a, b := max(o.a, i.a), min(o.b, i.b); a < b {
				return uint32(a), uint32(b - 1), true
			}
		}
	}
	return 0, 0, false
}

// Run shifts the tree at root.
func (s *Shift) Run(ctx context.Context, root string) (Counts, error) {
	workers := s.Workers
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	c := counters{w: make([]workerCount, workers)}
	for i := range c.w {
		c.w[i].buf = make([]byte, 1024)
	}
	var links linkSet
	var errMu sync.Mutex
	var errs []error
	// One entry's failure does not stop the shift: it is counted,
	// reported, and a rerun picks it up.
	failed := func(wc *workerCount, err error) {
		if wc.errors.Add(1) <= maxReported {
			errMu.Lock()
			errs = append(errs, err)
			errMu.Unlock()
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.Progress != nil {
		go progressLoop(ctx, &c, s.Progress)
	}
	err := ParallelWalk(ctx, root, Options{CrossMounts: s.CrossMounts, Skip: s.Skip}, workers, func(e *Entry) error {
		wc := &c.w[e.Worker]
		wc.seen.Add(1)
		nu, uok := shiftID(s.From.UID, s.To.UID, e.Stat.Uid)
		ng, gok := shiftID(s.From.GID, s.To.GID, e.Stat.Gid)
		if !uok || !gok {
			wc.unmapped.Add(1)
		}
		if nu == e.Stat.Uid && ng == e.Stat.Gid {
			if e.IsSymlink() {
				return nil
			}
			if s.Repair && !s.DryRun {
				if err := s.repair(e); err != nil {
					failed(wc, err)
				}
			}
			// An inode this run shifted (or counted, in a dry run)
			// through another of its names is done.
			single := e.IsDir() || e.Stat.Nlink == 1
			if s.Staying && (single || !links.claimed(e.Stat.Dev, e.Stat.Ino)) {
				if moved, err := s.shiftStaying(e, &wc.buf); err != nil {
					failed(wc, err)
				} else if moved && (single || links.claim(e.Stat.Dev, e.Stat.Ino)) {
					wc.changed.Add(1)
				}
			}
			return nil
		}
		// A hardlinked inode is changed by whichever of its names claims
		// it first; the others find it claimed (perhaps already shifted:
		// then they see a new owner, which either needs no change or is
		// claimed already). Every change passes the claim, so an inode is
		// never shifted twice.
		if !e.IsDir() && e.Stat.Nlink > 1 && !links.claim(e.Stat.Dev, e.Stat.Ino) {
			return nil
		}
		if s.DryRun {
			wc.changed.Add(1)
			return nil
		}
		if err := s.shiftEntry(e, nu, ng, &wc.buf); err != nil {
			failed(wc, err)
			return nil
		}
		wc.changed.Add(1)
		return nil
	})
	if err == nil && len(errs) > 0 {
		err = fmt.Errorf("%d entries could not be shifted; the first: %w", c.snapshot().Errors, errs[0])
	}
	return c.snapshot(), err
}

// linkSet holds the inodes with several names that a shift has claimed.
// It is sharded so that workers seldom wait on one another.
type linkSet struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[[2]uint64]struct{}
		_  [48]byte // a shard to a 64-byte cache line
	}
}

// claim reports whether the inode was not claimed before, claiming it.
func (l *linkSet) claim(dev, ino uint64) bool {
	return l.do(dev, ino, true)
}

// claimed reports whether the inode was claimed.
func (l *linkSet) claimed(dev, ino uint64) bool {
	return !l.do(dev, ino, false)
}

// do reports whether the inode was not claimed before, claiming it if
// asked to.
func (l *linkSet) do(dev, ino uint64, claim bool) bool {
	sh := &l.shards[(ino^ino>>6)%uint64(len(l.shards))]
	k := [2]uint64{dev, ino}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, dup := sh.m[k]; dup {
		return false
	}
	if !claim {
		return true
	}
	if sh.m == nil {
		sh.m = make(map[[2]uint64]struct{})
	}
	sh.m[k] = struct{}{}
	return true
}

// maxReported bounds the per-entry errors kept for the report.
const maxReported = 20

const (
	capXattr    = "security.capability"
	capRev2     = 0x02000000
	capRev3     = 0x03000000
	capRevMask  = 0xFF000000
	capV3Length = 24
)

// xattrs are an entry's shifted capability and ACLs, as read before its
// chown: nil where it has none.
type xattrs struct {
	caps      []byte
	capsMoved bool       // a v3 capability's root id moved
	acls      [2]acl.ACL // access, default: nil unless an id in it moved
	changed   bool       // some id in them moved
}

var aclNames = [2]string{acl.AccessXattr, acl.DefaultXattr}

// readXattrs reads and shifts the capability and ACLs of a non-symlink
// entry: one listxattr, and a read of each attribute the shift concerns.
func (s *Shift) readXattrs(e *Entry, buf *[]byte) (xattrs, error) {
	var x xattrs
	if s.noXattrs.Load() == e.Stat.Dev+1 {
		return x, nil
	}
	names, err := listXattrsAt(e, *buf)
	if err == unix.EOPNOTSUPP {
		s.noXattrs.Store(e.Stat.Dev + 1)
		return x, nil
	}
	if err != nil {
		return x, fmt.Errorf("reading the extended attributes of %s: %w", e.Path(), err)
	}
	if cap(names) > cap(*buf) {
		*buf = names[:cap(names)]
	}
	for len(names) > 0 {
		i := bytes.IndexByte(names, 0)
		if i < 0 {
			break
		}
		n := string(names[:i])
		names = names[i+1:]
		switch n {
		case capXattr:
			if x.caps, err = getXattrAt(e.Dirfd, e.Name, n); err != nil {
				return x, fmt.Errorf("reading the capabilities of %s: %w", e.Path(), err)
			}
			if s.shiftCaps(x.caps) {
				x.capsMoved, x.changed = true, true
			}
		case acl.AccessXattr, acl.DefaultXattr:
			raw, err := getXattrAt(e.Dirfd, e.Name, n)
			if err != nil {
				return x, fmt.Errorf("reading the ACL of %s: %w", e.Path(), err)
			}
			a, err := acl.Decode(raw)
			if err != nil {
				return x, fmt.Errorf("%s: %w", e.Path(), err)
			}
			k := 0
			if n == acl.DefaultXattr {
				k = 1
			}
			shifted, err := s.shiftACL(a)
			if err != nil {
				return x, fmt.Errorf("%s: %w", e.Path(), err)
			}
			if !bytes.Equal(shifted.Encode(), raw) {
				x.acls[k], x.changed = shifted, true
			}
		}
	}
	return x, nil
}

// writeACLs writes the entry's ACLs that the shift changed.
func writeACLs(e *Entry, x xattrs) error {
	for i, name := range aclNames {
		if x.acls[i] != nil {
			if err := setXattrAt(e.Dirfd, e.Name, name, x.acls[i].Encode()); err != nil {
				return fmt.Errorf("writing the ACL of %s: %w", e.Path(), err)
			}
		}
	}
	return nil
}

// shiftStaying shifts the ids inside the ACLs and capability of an entry
// whose owner stays (see Shift.Staying); it reports whether any moved.
// Each write is whole, and a shift's results are never its inputs, so
// doing it again (after a kill, or through another hardlink) changes
// nothing more.
func (s *Shift) shiftStaying(e *Entry, buf *[]byte) (bool, error) {
	x, err := s.readXattrs(e, buf)
	if err != nil || !x.changed || s.DryRun {
		return x.changed, err
	}
	if err := writeACLs(e, x); err != nil {
		return false, err
	}
	if x.capsMoved {
		if err := setXattrAt(e.Dirfd, e.Name, capXattr, x.caps); err != nil {
			return false, fmt.Errorf("writing the capabilities of %s: %w", e.Path(), err)
		}
	}
	return true, nil
}

func (s *Shift) shiftEntry(e *Entry, uid, gid uint32, buf *[]byte) error {
	link := e.IsSymlink()
	var x xattrs
	if !link {
		var err error
		if x, err = s.readXattrs(e, buf); err != nil {
			return err
		}
	}
	caps := x.caps
	// What the chown clears on a non-directory, its setuid/setgid bits
	// and file capability, is put back after it. Until then a marker on
	// the inode holds them, so that a shift killed in between is finished
	// by a resumed one (Repair) instead of leaving them lost behind an
	// owner that already looks right.
	mode := e.Stat.Mode & 0o7777
	suid := !link && !e.IsDir() && mode&0o6000 != 0
	marked := false
	if (suid || caps != nil) && s.noXattrs.Load() != e.Stat.Dev+1 {
		switch err := setXattrAt(e.Dirfd, e.Name, restoreXattr, encodeRestore(mode, caps)); err {
		case nil:
			marked = true
		case unix.EOPNOTSUPP, unix.EPERM: // no trusted.* attributes here (or not for us): unmarked
		default:
			return fmt.Errorf("marking %s for the shift: %w", e.Path(), err)
		}
	}
	// ACL entries do not depend on the owner, so they are written first:
	// a kill after the chown leaves nothing of them to do, and one before
	// it leaves them shifted already, which shifting again does not change
	// (a shift's results are never its inputs: overlapping mappings go
	// through a temporary range).
	if err := writeACLs(e, x); err != nil {
		return err
	}
	if err := fchownat(e, uid, gid); err != nil {
		return fmt.Errorf("changing the owner of %s: %w", e.Path(), err)
	}
	if s.crashAfterChown != nil && s.crashAfterChown(e) {
		return errCrashed
	}
	if link {
		return nil
	}
	return restore(e, suid, mode, caps, marked)
}

// restoreXattr marks an inode whose setuid/setgid bits or capability a
// shift cleared and has not yet put back; its value is encodeRestore's.
const restoreXattr = "trusted.volperm.shift-restore"

// errCrashed ends an entry's shift where a test kills it.
var errCrashed = errors.New("stopped after the chown")

func encodeRestore(mode uint32, caps []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, mode), caps...)
}

// restore puts back what a chown cleared, then removes the marker.
func restore(e *Entry, suid bool, mode uint32, caps []byte, marked bool) error {
	if suid {
		if err := chmodNoFollow(e, mode); err != nil {
			return err
		}
	}
	if caps != nil {
		if err := setXattrAt(e.Dirfd, e.Name, capXattr, caps); err != nil {
			return fmt.Errorf("restoring the capabilities of %s: %w", e.Path(), err)
		}
	}
	if marked {
		if err := removeXattrAt(e.Dirfd, e.Name, restoreXattr); err != nil && err != unix.ENODATA {
			return fmt.Errorf("removing the shift's mark from %s: %w", e.Path(), err)
		}
	}
	return nil
}

// repair finishes an entry an interrupted shift left marked: its owner
// is already right, its setuid/setgid bits and capability not yet back.
func (s *Shift) repair(e *Entry) error {
	if s.noXattrs.Load() == e.Stat.Dev+1 {
		return nil
	}
	v, err := getXattrAt(e.Dirfd, e.Name, restoreXattr)
	switch err {
	case nil:
	case unix.ENODATA, unix.EOPNOTSUPP:
		return nil
	default:
		return fmt.Errorf("reading the shift's mark on %s: %w", e.Path(), err)
	}
	if len(v) < 4 {
		return fmt.Errorf("%s: a malformed shift mark (%d bytes)", e.Path(), len(v))
	}
	mode, caps := binary.LittleEndian.Uint32(v), v[4:]
	if len(caps) == 0 {
		caps = nil
	}
	return restore(e, !e.IsDir() && mode&0o6000 != 0, mode, caps, true)
}

// chmodNoFollow sets the mode of the entry's name without following a
// symlink: fchmodat2 (Linux 6.6), else through an O_PATH descriptor.
func chmodNoFollow(e *Entry, mode uint32) error {
	if !noFchmodat2.Load() {
		_, _, errno := unix.Syscall6(unix.SYS_FCHMODAT2, uintptr(e.Dirfd), uintptr(unsafe.Pointer(e.cname())), uintptr(mode), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
		if errno != unix.ENOSYS {
			if errno != 0 {
				return fmt.Errorf("restoring the mode of %s: %w", e.Path(), errno)
			}
			return nil
		}
		noFchmodat2.Store(true)
	}
	fd, err := unix.Openat(e.Dirfd, e.Name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", e.Path(), err)
	}
	defer unix.Close(fd)
	if err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode); err != nil {
		return fmt.Errorf("restoring the mode of %s: %w", e.Path(), err)
	}
	return nil
}

var noFchmodat2 atomic.Bool

// shiftCaps moves a v3 capability's root id through the mapping, in
// place, and reports whether it moved; a v2 capability is kept as it was.
func (s *Shift) shiftCaps(b []byte) bool {
	if len(b) < capV3Length || binary.LittleEndian.Uint32(b)&capRevMask != capRev3 {
		return false
	}
	root := binary.LittleEndian.Uint32(b[20:])
	n, ok := shiftID(s.From.UID, s.To.UID, root)
	if ok && n != root {
		binary.LittleEndian.PutUint32(b[20:], n)
		return true
	}
	return false
}

// shiftACL moves the ids of named entries; two entries that land on one id
// cannot both be kept.
func (s *Shift) shiftACL(a acl.ACL) (acl.ACL, error) {
	out := make(acl.ACL, len(a))
	for i, e := range a {
		switch e.Tag {
		case acl.User:
			e.ID, _ = shiftID(s.From.UID, s.To.UID, e.ID)
		case acl.Group:
			e.ID, _ = shiftID(s.From.GID, s.To.GID, e.ID)
		}
		out[i] = e
	}
	out = out.Sorted()
	if err := out.Valid(); err != nil {
		return nil, fmt.Errorf("shifting the ACL %s: %w", a, err)
	}
	return out, nil
}

// fchownat is fchownat(2) with AT_SYMLINK_NOFOLLOW on the entry's name.
func fchownat(e *Entry, uid, gid uint32) error {
	_, errno := e.call6(unix.SYS_FCHOWNAT, uintptr(e.Dirfd), uintptr(unsafe.Pointer(e.cname())), uintptr(uid), uintptr(gid), unix.AT_SYMLINK_NOFOLLOW, 0)
	return errnoErr(errno)
}
