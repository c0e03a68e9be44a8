package userns

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/plan"
)

// Ops are the operations apply and revert make on the system. Tests
// replace them to interrupt an apply at any write.
type Ops struct {
	// Write replaces a file atomically with the mode and owner given
	// (-1: as created).
	Write  func(path string, data []byte, mode fs.FileMode, uid, gid int) error
	Remove func(path string) error
	// Run runs a command (useradd, userdel) on a live system.
	Run func(args ...string) error
	Now func() time.Time
}

// DefaultOps are the real ones.
func DefaultOps() Ops {
	return Ops{
		Write:  plan.WriteAtomicAs,
		Remove: os.Remove,
		Run: func(args ...string) error {
			out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
			return nil
		},
		Now: time.Now,
	}
}

// ManifestDir is where each apply is recorded, on the host.
const ManifestDir = "/var/lib/volperm/userns"

// Manifest records one apply: what each file was and became, and where
// its backup is, so that revert can restore it and tell whether it was
// changed since.
type Manifest struct {
	Stamp string `json:"stamp"`
	// State is applying (files may be half way: old or new), applied or
	// reverted.
	State       string         `json:"state"`
	Spec        string         `json:"spec"`
	Files       []ManifestFile `json:"files"`
	CreatedUser string         `json:"created_user,omitempty"` // by useradd; revert runs userdel
	path        string         // on disk
}

// ManifestFile is one file of an apply. A file that did not exist has no
// backup; revert removes it.
type ManifestFile struct {
	Path    string      `json:"path"`             // as on the host
	Backup  string      `json:"backup,omitempty"` // as on the host
	Existed bool        `json:"existed"`
	Mode    fs.FileMode `json:"mode"`
	UID     int         `json:"uid"`
	GID     int         `json:"gid"`
	Old     string      `json:"old_sha256,omitempty"`
	New     string      `json:"new_sha256"`
}

func sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// BackupSuffix is added to a file's name, with the apply's UTC time, for
// its backup: /etc/subuid.volperm-20260102T150405Z.
const BackupSuffix = ".volperm-"

// Apply writes the plan. Backups of every file come first, then the
// manifest, then the files, each atomically (temporary file, fsync,
// rename, with the old mode and owner), daemon.json last, so that an
// interruption at any point leaves every file either old or new and
// revert able to restore all of them. A plan without changes writes
// nothing and returns nil.
func Apply(sys System, p *Plan, ops Ops) (*Manifest, error) {
	if len(p.Changes) == 0 && p.UserAdd == nil {
		return nil, nil
	}
	unlock, ms, err := lockRecords(sys)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := unfinished(ms); err != nil {
		return nil, err
	}
	for _, c := range p.Changes {
		now, err := os.ReadFile(c.Path)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading %s: %w", c.Path, err)
		}
		if exists != c.Existed || !bytes.Equal(now, c.Old) {
			return nil, fmt.Errorf("%s changed since it was read: nothing written, run again", c.Path)
		}
	}

	m := &Manifest{Stamp: stamp(sys, ops.Now(), ms), State: "applying", Spec: p.Spec}
	m.path = sys.Path(filepath.Join(ManifestDir, m.Stamp+".json"))
	// Backups that no record names are of no use: a failure before the
	// record is written removes them.
	dropBackups := func() {
		for _, f := range m.Files {
			if f.Backup != "" {
				_ = ops.Remove(sys.Path(f.Backup))
			}
		}
	}
	for _, c := range p.Changes {
		mf := ManifestFile{Path: c.Host, Existed: c.Existed, Mode: c.Mode, UID: c.Owner.UID, GID: c.Owner.GID, New: sum(c.New)}
		if c.Existed {
			mf.Old, mf.Backup = sum(c.Old), c.Host+BackupSuffix+m.Stamp
			if err := ops.Write(sys.Path(mf.Backup), c.Old, c.Mode, c.Owner.UID, c.Owner.GID); err != nil {
				dropBackups()
				return nil, fmt.Errorf("backing up %s: %w", c.Path, err)
			}
		}
		m.Files = append(m.Files, mf)
	}
	if err := writeManifest(m, ops); err != nil {
		dropBackups()
		return nil, err
	}
	if p.UserAdd != nil {
		if err := ops.Run(p.UserAdd...); err != nil {
			return m, fmt.Errorf("creating %s: %w", p.User, err)
		}
		// Recorded only once it exists, so that revert never deletes an
		// account that appeared meanwhile (dockerd's "default" makes
		// dockremap) and that this apply failed to create. A kill between
		// the two leaves the account behind: the safer loss.
		m.CreatedUser = p.User
		if err := writeManifest(m, ops); err != nil {
			return m, err
		}
	}
	for _, c := range p.Changes {
		if !c.Existed {
			if err := os.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
				return m, fmt.Errorf("creating %s: %w", filepath.Dir(c.Path), err)
			}
		}
		if err := ops.Write(c.Path, c.New, c.Mode, c.Owner.UID, c.Owner.GID); err != nil {
			return m, err
		}
	}
	m.State = "applied"
	return m, writeManifest(m, ops)
}

// Unfinished is an error when the last apply did not finish: its files
// may be half old, half new, until volperm userns revert restores them.
func Unfinished(sys System) error {
	ms, err := manifests(sys)
	if err != nil {
		return err
	}
	return unfinished(ms)
}

func unfinished(ms []*Manifest) error {
	if n := len(ms); n > 0 && ms[n-1].State == "applying" {
		return fmt.Errorf("the apply of %s did not finish (%s): run volperm userns revert to restore what it changed, then apply again", ms[n-1].Stamp, ms[n-1].path)
	}
	return nil
}

// stamp is the apply's name: its UTC time, made unique if an apply of the
// same second exists.
func stamp(sys System, t time.Time, ms []*Manifest) string {
	base := t.UTC().Format("20060102T150405Z")
	s := base
	for i := 2; slices.ContainsFunc(ms, func(m *Manifest) bool { return m.Stamp == s }); i++ {
		s = fmt.Sprintf("%s-%d", base, i)
	}
	return s
}

func writeManifest(m *Manifest, ops Ops) error {
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := ops.Write(m.path, append(data, '\n'), 0o600, -1, -1); err != nil {
		return fmt.Errorf("writing the apply record: %w", err)
	}
	return nil
}

// manifests lists the recorded applies, oldest first.
func manifests(sys System) ([]*Manifest, error) {
	dir := sys.Path(ManifestDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the apply records: %w", err)
	}
	var out []*Manifest
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading the apply record: %w", err)
		}
		var m Manifest
		if err := json.Unmarshal(data, &m); err != nil || m.Stamp == "" {
			return nil, fmt.Errorf("%s is not a volperm userns apply record: %v", p, err)
		}
		m.path = p
		out = append(out, &m)
	}
	sort.Slice(out, func(i, j int) bool { return stampLess(out[i].Stamp, out[j].Stamp) })
	return out, nil
}

// stampLess orders stamps by time, then by their -N suffix.
func stampLess(a, b string) bool {
	if len(a) != len(b) {
		ab, _, _ := strings.Cut(a, "-")
		bb, _, _ := strings.Cut(b, "-")
		if ab != bb {
			return ab < bb
		}
		return len(a) < len(b)
	}
	return a < b
}

// lockRecords locks the system's apply records and reads them.
func lockRecords(sys System) (unlock func(), ms []*Manifest, err error) {
	if unlock, err = lock(sys); err != nil {
		return nil, nil, err
	}
	if ms, err = manifests(sys); err != nil {
		unlock()
		return nil, nil, err
	}
	return unlock, ms, nil
}

// lock serialises applies and reverts of one system.
func lock(sys System) (func(), error) {
	// The parents as a package would make them (a root directory may be
	// an image whose /var/lib does not exist yet), the records private.
	dir := sys.Path(ManifestDir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another volperm userns apply or revert is running (%s is locked)", dir)
	}
	return func() { f.Close() }, nil
}

// Revert restores the files of the latest apply that has not been
// reverted: each backup goes back atomically with its mode and owner, a
// file the apply created is removed, and a user it created with useradd
// is deleted. A file changed since the apply stops the revert before
// anything is written, unless force; a file already restored (an
// interrupted revert) is left as it is. The backups are removed once
// every file is restored.
func Revert(sys System, force bool, ops Ops) (*Manifest, error) {
	unlock, ms, err := lockRecords(sys)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var m *Manifest
	for i := len(ms) - 1; i >= 0 && m == nil; i-- {
		if ms[i].State != "reverted" {
			m = ms[i]
		}
	}
	if m == nil {
		return nil, fmt.Errorf("nothing to revert: no volperm userns apply is recorded in %s", sys.Path(ManifestDir))
	}
	type step struct {
		f    ManifestFile
		data []byte // the backup; nil to remove the file
	}
	var steps []step
	var problems []string
	for _, f := range m.Files {
		now, err := os.ReadFile(sys.Path(f.Path))
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading %s: %w", sys.Path(f.Path), err)
		}
		switch {
		case f.Existed && exists && sum(now) == f.Old, !f.Existed && !exists:
			continue // already as before the apply
		case !force && (!exists || sum(now) != f.New):
			problems = append(problems, fmt.Sprintf("%s changed since the apply of %s", sys.Path(f.Path), m.Stamp))
			continue
		}
		s := step{f: f}
		if f.Existed {
			b, err := os.ReadFile(sys.Path(f.Backup))
			if err != nil {
				return nil, fmt.Errorf("reading the backup of %s: %w", f.Path, err)
			}
			if sum(b) != f.Old {
				return nil, fmt.Errorf("the backup %s does not hold what %s was before the apply (its checksum differs): restore it by hand", sys.Path(f.Backup), f.Path)
			}
			s.data = b
		}
		steps = append(steps, s)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: nothing restored; --force restores the backups anyway", strings.Join(problems, "; "))
	}
	if m.CreatedUser != "" && sys.Live() {
		if hasUser(sys, m.CreatedUser) {
			if err := ops.Run("userdel", m.CreatedUser); err != nil {
				return nil, fmt.Errorf("deleting the user %s the apply created: %w", m.CreatedUser, err)
			}
		}
	}
	// In reverse: daemon.json first, so that it never names a user whose
	// ranges are gone.
	for _, s := range slices.Backward(steps) {
		p := sys.Path(s.f.Path)
		if s.data == nil {
			if err := ops.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return m, fmt.Errorf("removing %s: %w", p, err)
			}
			continue
		}
		if err := ops.Write(p, s.data, s.f.Mode, s.f.UID, s.f.GID); err != nil {
			return m, err
		}
	}
	m.State = "reverted"
	if err := writeManifest(m, ops); err != nil {
		return m, err
	}
	for _, f := range m.Files {
		if f.Backup != "" {
			_ = ops.Remove(sys.Path(f.Backup))
		}
	}
	return m, nil
}

// hasUser reports whether the system's passwd has the user.
func hasUser(sys System, name string) bool {
	f, err := readFile(sys, "/etc/passwd")
	if err != nil {
		return false
	}
	users, err := identity.ParsePasswd(bytes.NewReader(f.Data), f.Path)
	if err != nil {
		return bytes.Contains(f.Data, []byte("\n"+name+":")) || bytes.HasPrefix(f.Data, []byte(name+":"))
	}
	_, ok := users.ByName(name)
	return ok
}
