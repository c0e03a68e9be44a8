package plan

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Owner is a file's owner, -1 for "leave as created".
type Owner struct{ UID, GID int }

// OwnerOf is the owner of a file as Stat returned it.
func OwnerOf(fi fs.FileInfo) Owner {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return Owner{int(st.Uid), int(st.Gid)}
	}
	return Owner{-1, -1}
}

// WriteAtomic replaces a file: a temporary file in the same directory,
// written, synced and renamed over it, so that a reader never sees it
// half-written and a crash leaves the old or the new content.
func WriteAtomic(path string, data []byte, mode os.FileMode) error {
	return WriteAtomicAs(path, data, mode, -1, -1)
}

// WriteAtomicAs is WriteAtomic that also gives the file an owner (-1
// leaves that id as created) before it takes the file's place, so that a
// system file such as /etc/subuid is never visible with the wrong owner or
// mode. The directory is synced after the rename, so the new name survives
// a power cut too.
func WriteAtomicAs(path string, data []byte, mode os.FileMode, uid, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".volperm-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil && (uid >= 0 || gid >= 0) {
		err = tmp.Chown(uid, gid)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		_ = dir.Sync()
		dir.Close()
	}
	return nil
}
