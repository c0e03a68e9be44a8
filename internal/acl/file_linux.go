package acl

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Get reads the ACL named by xattr (AccessXattr or DefaultXattr) of path,
// without following a final symlink. A file with no such xattr gives nil
// and no error: its access ACL is then its mode bits.
func Get(path, xattr string) (ACL, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, xattr, buf)
		switch {
		case errors.Is(err, unix.ENODATA):
			return nil, nil
		case errors.Is(err, unix.ERANGE):
			buf = make([]byte, len(buf)*4)
			continue
		case errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("reading %s of %s: %w", xattr, path, err)
		}
		a, err := Decode(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("%s of %s: %w", xattr, path, err)
		}
		return a, nil
	}
}

// Set writes an ACL to path without following a final symlink.
func Set(path, xattr string, a ACL) error {
	if err := a.Sorted().Valid(); err != nil {
		return fmt.Errorf("setting %s of %s: %w", xattr, path, err)
	}
	if err := unix.Lsetxattr(path, xattr, a.Encode(), 0); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("setting %s of %s: the filesystem does not support POSIX ACLs (%w)", xattr, path, err)
		}
		return fmt.Errorf("setting %s of %s: %w", xattr, path, err)
	}
	return nil
}

// GetFd reads an ACL through an open file descriptor, for walks that must
// not re-resolve paths.
func GetFd(fd int, xattr string) (ACL, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Fgetxattr(fd, xattr, buf)
		switch {
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		case errors.Is(err, unix.ERANGE):
			buf = make([]byte, len(buf)*4)
			continue
		case err != nil:
			return nil, fmt.Errorf("reading %s: %w", xattr, err)
		}
		return Decode(buf[:n])
	}
}

// SetFd writes an ACL through an open file descriptor.
func SetFd(fd int, xattr string, a ACL) error {
	if err := a.Sorted().Valid(); err != nil {
		return fmt.Errorf("setting %s: %w", xattr, err)
	}
	if err := unix.Fsetxattr(fd, xattr, a.Encode(), 0); err != nil {
		return fmt.Errorf("setting %s: %w", xattr, err)
	}
	return nil
}

// Remove deletes an ACL xattr through a descriptor; a missing one is fine.
func RemoveFd(fd int, xattr string) error {
	if err := unix.Fremovexattr(fd, xattr); err != nil && !errors.Is(err, unix.ENODATA) {
		return fmt.Errorf("removing %s: %w", xattr, err)
	}
	return nil
}
