package access

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/acl"
)

// Stat reads a file's access metadata without following a final symlink.
func Stat(path string) (File, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return File{}, fmt.Errorf("reading %s: %w", path, err)
	}
	f := File{UID: st.Uid, GID: st.Gid, Mode: st.Mode & 0o7777, Dir: st.Mode&unix.S_IFMT == unix.S_IFDIR}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return f, nil
	}
	a, err := acl.Get(path, acl.AccessXattr)
	if err != nil {
		return File{}, err
	}
	f.ACL = a
	return f, nil
}
