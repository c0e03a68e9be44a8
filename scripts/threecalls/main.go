// Command threecalls is the lower bound of a correct shift's first run,
// for scripts/bench-shift.sh: one thread walks a tree and makes, for each
// entry, only the three calls a shift cannot do without — a stat (the
// owner decides the new owner), a listxattr (ACLs and capabilities can
// only be found by asking) and a chown — each on the entry's name
// relative to its directory, with no other work at all. The calls are
// raw (no scheduler hand-off around them): there is one thread to run.
//
//	threecalls UID:GID DIR
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

var uid, gid int

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: threecalls UID:GID DIR")
		os.Exit(2)
	}
	u, g, ok := strings.Cut(os.Args[1], ":")
	var err1, err2 error
	uid, err1 = strconv.Atoi(u)
	gid, err2 = strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil {
		fmt.Fprintf(os.Stderr, "threecalls: %q: want UID:GID\n", os.Args[1])
		os.Exit(2)
	}
	fd, err := unix.Open(os.Args[2], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		err = walk(fd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "threecalls:", err)
		os.Exit(1)
	}
}

func walk(dirfd int) error {
	defer unix.Close(dirfd)
	buf := make([]byte, 32<<10)
	st := new(unix.Stat_t) // on the heap: the kernel writes to it through a number
	for {
		n, err := unix.Getdents(dirfd, buf)
		if err != nil || n == 0 {
			return err
		}
		for off := 0; off < n; {
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			name := buf[off+19 : off+reclen]
			off += reclen
			name = name[:bytes.IndexByte(name, 0)+1] // with its NUL
			if s := string(name); s == ".\x00" || s == "..\x00" {
				continue
			}
			p := uintptr(unsafe.Pointer(&name[0]))
			if _, _, e := syscall.RawSyscall6(unix.SYS_NEWFSTATAT, uintptr(dirfd), p, uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0); e != 0 {
				return e
			}
			if st.Mode&unix.S_IFMT != unix.S_IFLNK {
				if _, _, e := syscall.RawSyscall6(unix.SYS_LISTXATTRAT, uintptr(dirfd), p, unix.AT_SYMLINK_NOFOLLOW, 0, 0, 0); e != 0 {
					return e
				}
			}
			if _, _, e := syscall.RawSyscall6(unix.SYS_FCHOWNAT, uintptr(dirfd), p, uintptr(uid), uintptr(gid), unix.AT_SYMLINK_NOFOLLOW, 0); e != 0 {
				return e
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				fd, err := unix.Openat(dirfd, string(name[:len(name)-1]), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err == nil {
					err = walk(fd)
				}
				if err != nil {
					return err
				}
			}
		}
	}
}
