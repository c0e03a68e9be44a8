// Package tree walks directory trees safely: every step is relative to an
// open directory descriptor (openat with O_NOFOLLOW), so a symlink — even
// one swapped in while the walk runs — is never followed; the walk stays
// on the starting filesystem unless told otherwise. It is the one walker
// under grant, shift and the entrypoint's chown.
package tree

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Entry is one visited path. The walk reuses Entry values: a visit
// function must not keep one.
type Entry struct {
	Dir    string // the parent's path, for messages only: never re-resolved
	Dirfd  int    // the parent directory's descriptor
	Name   string // the name in Dirfd
	Stat   unix.Stat_t
	Worker int // which worker visits it, for per-worker state
	root   bool
	name0  *byte // Name, NUL-terminated, when the walk has it in a buffer
	quick  bool  // on a local filesystem: see call6
}

// cname is the entry's name as a NUL-terminated C string.
func (e *Entry) cname() *byte {
	if e.name0 != nil {
		return e.name0
	}
	p, _ := unix.BytePtrFromString(e.Name)
	return p
}

// Path is the entry's path, for messages.
func (e *Entry) Path() string {
	if e.root {
		return e.Dir
	}
	return e.Dir + "/" + e.Name
}

// IsDir reports a directory.
func (e *Entry) IsDir() bool { return e.Stat.Mode&unix.S_IFMT == unix.S_IFDIR }

// IsSymlink reports a symlink.
func (e *Entry) IsSymlink() bool { return e.Stat.Mode&unix.S_IFMT == unix.S_IFLNK }

// IsRegular reports a regular file.
func (e *Entry) IsRegular() bool { return e.Stat.Mode&unix.S_IFMT == unix.S_IFREG }

// Open opens the entry itself (a regular file or directory) read-only
// without following a symlink, for descriptor-based calls such as
// fgetxattr. Other kinds cannot be opened safely and give an error.
func (e *Entry) Open() (int, error) {
	if !e.IsDir() && !e.IsRegular() {
		return -1, fmt.Errorf("%s: not a regular file or directory", e.Path())
	}
	fd, err := unix.Openat(e.Dirfd, e.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening %s: %w", e.Path(), err)
	}
	// The entry may have been replaced since it was listed.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != e.Stat.Ino || st.Dev != e.Stat.Dev {
		unix.Close(fd)
		return -1, fmt.Errorf("%s changed while it was being walked", e.Path())
	}
	return fd, nil
}

// Options tune a walk.
type Options struct {
	// CrossMounts visits entries on other filesystems (mount points and
	// what is below them, bind-mounted files too); without it they are
	// neither visited nor entered.
	CrossMounts bool
	// Skip lists entries (by device and inode) that are neither visited
	// nor entered, such as mount points on the same device as the root
	// (a bind mount of another directory of the same filesystem), which
	// the device check cannot see.
	Skip map[FileID]bool
}

// FileID names an inode: its device and number.
type FileID struct{ Dev, Ino uint64 }

// skip reports whether the walk leaves e alone.
func (o *Options) skip(e *Entry, dev uint64) bool {
	if e.Stat.Dev != dev && !o.CrossMounts {
		return true
	}
	return len(o.Skip) > 0 && o.Skip[FileID{e.Stat.Dev, e.Stat.Ino}]
}

// ErrSkipDir returned by the visit function for a directory skips its
// contents.
var ErrSkipDir = errors.New("skip this directory")

// Walk visits root and, when it is a directory, everything below it,
// parents before children. A symlink is visited (it can be lchown'ed) but
// never followed — root itself included.
func Walk(ctx context.Context, root string, o Options, visit func(*Entry) error) error {
	e, err := rootEntry(root)
	if err != nil {
		return err
	}
	defer unix.Close(e.Dirfd)
	return walk(ctx, e, e.Stat.Dev, o, visit)
}

// rootEntry opens root's parent and stats root in it, without following
// root if it is a symlink. The caller closes Dirfd.
func rootEntry(root string) (*Entry, error) {
	parent, name := filepath.Dir(root), filepath.Base(root)
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", parent, err)
	}
	e := &Entry{Dir: root, Dirfd: pfd, Name: name, root: true}
	if err := unix.Fstatat(pfd, name, &e.Stat, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Close(pfd)
		return nil, fmt.Errorf("reading %s: %w", root, err)
	}
	return e, nil
}

func walk(ctx context.Context, e *Entry, dev uint64, o Options, visit func(*Entry) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := visit(e)
	if errors.Is(err, ErrSkipDir) || !e.IsDir() {
		return nil
	}
	if err != nil {
		return err
	}
	if e.Stat.Dev != dev && !o.CrossMounts {
		return nil
	}
	fd, err := unix.Openat(e.Dirfd, e.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", e.Path(), err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != e.Stat.Ino {
		return fmt.Errorf("%s changed while it was being walked", e.Path())
	}
	dir := os.NewFile(uintptr(dupFd(fd)), e.Path())
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return fmt.Errorf("listing %s: %w", e.Path(), err)
	}
	for _, n := range names {
		c := &Entry{Dir: e.Path(), Dirfd: fd, Name: n}
		if err := unix.Fstatat(fd, n, &c.Stat, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile
			}
			return fmt.Errorf("reading %s: %w", c.Path(), err)
		}
		if o.skip(c, dev) {
			continue // a mount point, or a file bind-mounted from another filesystem
		}
		if err := walk(ctx, c, dev, o, visit); err != nil {
			return err
		}
	}
	return nil
}

func dupFd(fd int) int {
	n, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return n
}
