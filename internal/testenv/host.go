package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// subFiles are the files a Layout overwrites.
var subFiles = []string{"/etc/subuid", "/etc/subgid"}

// hostDir holds the lock that serialises host edits between test processes
// (`go test ./...` runs packages in parallel, and two layouts cannot both
// be in /etc/subuid at once) and the journal of the edits in progress.
const hostDir = "/run/volperm-testenv"

// hostEdits is what this process changed on the host: it holds the lock
// from its first edit until Cleanup.
type hostEdits struct {
	lock    *os.File
	journal journal
}

// journal records how to undo the host edits. It is kept on disk too, so
// that the next test process can undo the edits of one that was killed
// before its Cleanup ran.
type journal struct {
	Files  []savedFile `json:"files"`
	Users  []string    `json:"users,omitempty"`
	Groups []string    `json:"groups,omitempty"`
	Dir    string      `json:"dir,omitempty"` // the daemons' directory, see baseDir
}

// savedFile is a file as it was before the first edit.
type savedFile struct {
	Path    string      `json:"path"`
	Missing bool        `json:"missing,omitempty"`
	Data    []byte      `json:"data,omitempty"`
	Mode    fs.FileMode `json:"mode,omitempty"`
	UID     int         `json:"uid"`
	GID     int         `json:"gid"`
}

// EnsureUser makes sure a host user (with its same-named group) exists and
// returns its uid. A user it creates is deleted by Cleanup.
func EnsureUser(t testing.TB, name string) uint32 {
	t.Helper()
	return hostEdit(t, func() (uint32, error) { return ensureUser(name) })
}

// EnsureGroup makes sure a host group exists and returns its gid. A group
// it creates is deleted by Cleanup.
func EnsureGroup(t testing.TB, name string) uint32 {
	t.Helper()
	return hostEdit(t, func() (uint32, error) {
		if err := ensureGroup(name); err != nil {
			return 0, err
		}
		g, err := user.LookupGroup(name)
		if err != nil {
			return 0, fmt.Errorf("looking up group %s: %w", name, err)
		}
		return parseID(g.Gid)
	})
}

// hostEdit runs an edit of the host's accounts under the host lock.
func hostEdit(t testing.TB, edit func() (uint32, error)) uint32 {
	t.Helper()
	NeedRoot(t)
	state.Lock()
	defer state.Unlock()
	if err := beginHostEdits(t); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	id, err := edit()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return id
}

// beginHostEdits takes the cross-process lock and saves the originals of
// the files a Layout overwrites, once per process (or after a Cleanup).
// It must run before any user is created: Debian's useradd may append its
// own ranges to /etc/subuid and /etc/subgid.
func beginHostEdits(t testing.TB) error {
	t.Helper()
	if state.interrupted {
		return errInterrupted
	}
	if state.host.lock != nil {
		return nil
	}
	if err := os.MkdirAll(hostDir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", hostDir, err)
	}
	lockPath := filepath.Join(hostDir, "lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening %s: %w", lockPath, err)
	}
	err = flock(f, syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		t.Logf("testenv: waiting for another test process to finish with /etc/subuid and /etc/subgid")
		err = flock(f, syscall.LOCK_EX)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("locking %s: %w", lockPath, err)
	}
	if err := recoverJournal(t); err != nil {
		f.Close()
		return err
	}
	j := journal{Dir: state.dir}
	for _, p := range subFiles {
		s, err := saveFile(p)
		if err != nil {
			f.Close()
			return err
		}
		j.Files = append(j.Files, s)
	}
	state.host = hostEdits{lock: f, journal: j}
	return writeJournal()
}

// endHostEdits undoes the edits and releases the lock.
func endHostEdits() error {
	if state.host.lock == nil {
		return nil
	}
	err := undo(state.host.journal)
	if err == nil {
		// A journal whose undo failed stays for the next process to retry.
		if rerr := os.Remove(journalPath()); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("removing the journal: %w", rerr)
		}
	}
	state.host.lock.Close() // closing releases the flock
	state.host = hostEdits{}
	return err
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func journalPath() string { return filepath.Join(hostDir, "journal.json") }

func writeJournal() error {
	data, err := json.Marshal(state.host.journal)
	if err != nil {
		return fmt.Errorf("encoding the journal: %w", err)
	}
	return writeAtomic(journalPath(), data, 0o600, 0, 0)
}

// recoverJournal undoes the edits of a test process that died without
// cleaning up, so that the originals saved next are the real ones.
func recoverJournal(t testing.TB) error {
	t.Helper()
	data, err := os.ReadFile(journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("decoding the journal %s: %w", journalPath(), err)
	}
	t.Logf("testenv: undoing host edits left by a test process that did not clean up: users %v, groups %v", j.Users, j.Groups)
	if err := undo(j); err != nil {
		return fmt.Errorf("undoing the edits in %s: %w", journalPath(), err)
	}
	if err := os.Remove(journalPath()); err != nil {
		return fmt.Errorf("removing the journal: %w", err)
	}
	return nil
}

// undo restores the saved files and deletes the users, then the groups,
// that the journal records as created.
func undo(j journal) error {
	var errs []error
	for _, s := range j.Files {
		if err := restoreFile(s); err != nil {
			errs = append(errs, err)
		}
	}
	for _, u := range j.Users {
		if _, err := user.Lookup(u); err != nil {
			continue // never created, or already gone
		}
		if out, err := exec.Command("userdel", u).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("deleting user %s: %w: %s", u, err, strings.TrimSpace(string(out))))
		}
	}
	for _, g := range j.Groups {
		if _, err := user.LookupGroup(g); err != nil {
			continue
		}
		if out, err := exec.Command("groupdel", g).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("deleting group %s: %w: %s", g, err, strings.TrimSpace(string(out))))
		}
	}
	if j.Dir != "" {
		if err := removeUnmounted(j.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeUnmounted removes the daemons' directory unless something is still
// mounted under it: a daemon that has not finished exiting still has its
// layers mounted there, and removing through a mount is never wanted.
func removeUnmounted(dir string) error {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading the mount table: %w", err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		// The fifth field is the mount point, with spaces escaped.
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			return fmt.Errorf("removing %s: %s is still mounted", dir, f[4])
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}

// saveFile reads a file with its mode and owner, or notes that it is missing.
func saveFile(path string) (savedFile, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return savedFile{Path: path, Missing: true}, nil
	}
	if err != nil {
		return savedFile{}, fmt.Errorf("saving %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return savedFile{}, fmt.Errorf("saving %s: %w", path, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return savedFile{Path: path, Data: data, Mode: fi.Mode().Perm(), UID: int(st.Uid), GID: int(st.Gid)}, nil
}

// restoreFile puts a saved file back exactly: content, mode and owner.
func restoreFile(s savedFile) error {
	if s.Missing {
		if err := os.Remove(s.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("restoring %s: %w", s.Path, err)
		}
		return nil
	}
	if err := writeAtomic(s.Path, s.Data, s.Mode, s.UID, s.GID); err != nil {
		return fmt.Errorf("restoring %s: %w", s.Path, err)
	}
	return nil
}

// writeAtomic replaces a file through a rename in the same directory, so
// that a reader (dockerd, useradd) never sees it half written and a crash
// never leaves it truncated. (plan.WriteAtomicAs does the same; this
// package cannot import plan, whose dependency acl tests with testenv.)
func writeAtomic(path string, data []byte, mode fs.FileMode, uid, gid int) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".testenv-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// ensureUser creates a system user with its same-named group when missing:
// dockerd's --userns-remap=NAME looks up a group called NAME as well.
func ensureUser(name string) (uint32, error) {
	if u, err := user.Lookup(name); err == nil {
		return parseID(u.Uid)
	} else if !errors.As(err, new(user.UnknownUserError)) {
		return 0, fmt.Errorf("looking up user %s: %w", name, err)
	}
	// Journal first: a process killed right after useradd still has its
	// user deleted by the next one.
	state.host.journal.Users = append(state.host.journal.Users, name)
	if err := writeJournal(); err != nil {
		return 0, err
	}
	// SUB_*_COUNT=0 keeps useradd from adding ranges of its own to
	// /etc/subuid and /etc/subgid: the layouts own those files.
	out, err := exec.Command("useradd", "-r", "-M", "-s", "/usr/sbin/nologin",
		"-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("creating user %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("looking up the new user %s: %w", name, err)
	}
	return parseID(u.Uid)
}

// ensureGroup creates a system group when missing.
func ensureGroup(name string) error {
	if _, err := user.LookupGroup(name); err == nil {
		return nil
	} else if !errors.As(err, new(user.UnknownGroupError)) {
		return fmt.Errorf("looking up group %s: %w", name, err)
	}
	state.host.journal.Groups = append(state.host.journal.Groups, name)
	if err := writeJournal(); err != nil {
		return err
	}
	if out, err := exec.Command("groupadd", "-r", name).CombinedOutput(); err != nil {
		return fmt.Errorf("creating group %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func parseID(s string) (uint32, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("parsing id %q: %w", s, err)
	}
	return uint32(id), nil
}

// installLayout creates the layout's user and group if missing and writes
// its lines to /etc/subuid and /etc/subgid, keeping the files' original
// mode and owner.
func installLayout(t testing.TB, l Layout) error {
	t.Helper()
	if err := beginHostEdits(t); err != nil {
		return err
	}
	if l.User != "" {
		if _, err := ensureUser(l.User); err != nil {
			return err
		}
	}
	if l.Group != "" {
		if err := ensureGroup(l.Group); err != nil {
			return err
		}
	}
	// The lines go in the order of subFiles: /etc/subuid, then /etc/subgid.
	for i, lines := range [][]string{l.SubUID, l.SubGID} {
		orig := state.host.journal.Files[i]
		mode, uid, gid := orig.Mode, orig.UID, orig.GID
		if orig.Missing {
			mode, uid, gid = 0o644, 0, 0
		}
		var b strings.Builder
		for _, line := range lines {
			b.WriteString(line + "\n")
		}
		if err := writeAtomic(orig.Path, []byte(b.String()), mode, uid, gid); err != nil {
			return err
		}
	}
	return nil
}
