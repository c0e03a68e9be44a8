package tree

import (
	"golang.org/x/sys/unix"
)

// call6 makes one of the system calls made for every entry (a name lookup
// and at most an inode update) or directory (open, list). On a local
// filesystem such a call never waits for long, and telling the Go
// scheduler about it costs more than the call itself: there the call is
// raw and keeps its processor. On other filesystems (network and FUSE
// ones can hang) it is a normal one.
//
// Callers pass pointers as numbers, some to their own stack: call6 must
// not grow (move) the stack before the kernel has used them, hence
// nosplit, like the syscall package's own functions.
//
//go:nosplit
func (e *Entry) call6(n, a1, a2, a3, a4, a5, a6 uintptr) (uintptr, unix.Errno) {
	for {
		var r uintptr
		var errno unix.Errno
		if e.quick {
			r, _, errno = unix.RawSyscall6(n, a1, a2, a3, a4, a5, a6)
		} else {
			r, _, errno = unix.Syscall6(n, a1, a2, a3, a4, a5, a6)
		}
		if errno != unix.EINTR {
			return r, errno
		}
	}
}

// close closes a descriptor the walk opened, raw like call6 but never
// retried: Linux releases the descriptor even when close reports EINTR.
//
//go:nosplit
func (e *Entry) close(fd int) {
	if e.quick {
		unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
		return
	}
	unix.Close(fd)
}

// localFS reports whether path is on a local disk or memory filesystem,
// where lookups and inode updates do not wait on a network or a daemon.
func localFS(path string) bool {
	var fs unix.Statfs_t
	if unix.Statfs(path, &fs) != nil {
		return false
	}
	switch uint32(fs.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC,
		unix.TMPFS_MAGIC, unix.OVERLAYFS_SUPER_MAGIC, unix.F2FS_SUPER_MAGIC:
		return true
	}
	return false
}
