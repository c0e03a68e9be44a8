package tree

import (
	"errors"
	"runtime"
	"strconv"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The *xattrat system calls (Linux 6.13) name a file by directory
// descriptor and name, without following a final symlink and without a
// detour through /proc: one cheap call per entry on the hot path of shift.
// Older kernels fall back to the entry's /proc/self/fd path.

var noXattrat atomic.Bool

type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

func procName(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// listXattrsAt lists the extended attribute names of (dirfd, name), into
// buf when it is large enough. It asks for the size first: most entries
// have no attributes, and a sizing call costs the kernel no buffer.
func listXattrsAt(e *Entry, buf []byte) ([]byte, error) {
	for {
		n, err := listXattr(e, nil)
		if err == nil && n > 0 {
			if len(buf) < n {
				buf = make([]byte, n+256)
			}
			n, err = listXattr(e, buf)
		}
		switch err {
		case nil:
			return buf[:n], nil
		case unix.ERANGE: // attributes added since the sizing call
			continue
		}
		return nil, err
	}
}

func listXattr(e *Entry, buf []byte) (int, error) {
	if !noXattrat.Load() {
		var bp unsafe.Pointer
		if len(buf) > 0 {
			bp = unsafe.Pointer(&buf[0])
		}
		r, errno := e.call6(unix.SYS_LISTXATTRAT, uintptr(e.Dirfd), uintptr(unsafe.Pointer(e.cname())), unix.AT_SYMLINK_NOFOLLOW, uintptr(bp), uintptr(len(buf)), 0)
		if errno != unix.ENOSYS {
			return int(r), errnoErr(errno)
		}
		noXattrat.Store(true)
	}
	return unix.Llistxattr(procName(e.Dirfd, e.Name), buf)
}

// xattrAt makes one of the *xattrat calls on (dirfd, name), without
// following a final symlink; ok is false on a kernel without them, whose
// callers go through /proc instead.
func xattrAt(nr uintptr, dirfd int, name, attr string, args *xattrArgs) (n int, ok bool, err error) {
	if noXattrat.Load() {
		return 0, false, nil
	}
	p, _ := unix.BytePtrFromString(name)
	a, _ := unix.BytePtrFromString(attr)
	var size uintptr
	if args != nil {
		size = unsafe.Sizeof(*args)
	}
	r, _, e := unix.Syscall6(nr, uintptr(dirfd), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(args)), size)
	if e == unix.ENOSYS {
		noXattrat.Store(true)
		return 0, false, nil
	}
	return int(r), true, errnoErr(e)
}

func getXattrAt(dirfd int, name, attr string) ([]byte, error) {
	buf := make([]byte, 128)
	for {
		n, ok, err := xattrAt(unix.SYS_GETXATTRAT, dirfd, name, attr, &xattrArgs{value: uint64(uintptr(unsafe.Pointer(&buf[0]))), size: uint32(len(buf))})
		runtime.KeepAlive(buf)
		if !ok {
			n, err = unix.Lgetxattr(procName(dirfd, name), attr, buf)
		}
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func setXattrAt(dirfd int, name, attr string, value []byte) error {
	var vp uintptr
	if len(value) > 0 {
		vp = uintptr(unsafe.Pointer(&value[0]))
	}
	_, ok, err := xattrAt(unix.SYS_SETXATTRAT, dirfd, name, attr, &xattrArgs{value: uint64(vp), size: uint32(len(value))})
	runtime.KeepAlive(value) // only a number in args pointed at it
	if ok {
		return err
	}
	return unix.Lsetxattr(procName(dirfd, name), attr, value, 0)
}

func removeXattrAt(dirfd int, name, attr string) error {
	if _, ok, err := xattrAt(unix.SYS_REMOVEXATTRAT, dirfd, name, attr, nil); ok {
		return err
	}
	return unix.Lremovexattr(procName(dirfd, name), attr)
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
