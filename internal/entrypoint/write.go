package entrypoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// pending is a set of files written beside their targets, not yet in place.
type pending interface {
	// finish renames every file into place; when one rename fails the
	// ones already done are put back, so that either all files are new
	// or all are old.
	finish() error
	// abort removes what finish did not use.
	abort()
}

type tempFile struct {
	f        *etcFile
	old      []byte // the content being replaced, to put back
	temp     string
	replaced bool
}

type pendingFiles struct {
	files []*tempFile
	// rename is os.Rename, replaceable to test a failure between renames.
	rename func(from, to string) error
}

// writePair writes each edited file to a temporary file in its directory,
// with the original's mode and owner, and syncs it. Nothing is in place
// yet: a read-only /etc fails here, before anything changed.
func writePair(files ...*etcFile) (pending, error) {
	p := &pendingFiles{rename: os.Rename}
	for _, f := range files {
		if !f.edited {
			continue
		}
		t, err := writeTemp(f.path, f.bytes())
		if err != nil {
			p.abort()
			return nil, fmt.Errorf("editing %s: %w", f.path, describe(err))
		}
		old, err := os.ReadFile(f.path)
		if err != nil {
			os.Remove(t)
			p.abort()
			return nil, fmt.Errorf("editing %s: %w", f.path, describe(err))
		}
		p.files = append(p.files, &tempFile{f: f, old: old, temp: t})
	}
	return p, nil
}

// writeTemp writes data beside path with path's mode and owner.
func writeTemp(path string, data []byte) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	tf, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".volperm-*")
	if err != nil {
		return "", err
	}
	name := tf.Name()
	st := fi.Sys().(*syscall.Stat_t)
	_, err = tf.Write(data)
	err = errors.Join(err,
		tf.Chown(int(st.Uid), int(st.Gid)),
		tf.Chmod(fi.Mode().Perm()),
		tf.Sync(),
		tf.Close())
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

func (p *pendingFiles) finish() error {
	for i, t := range p.files {
		if err := p.rename(t.temp, t.f.path); err != nil {
			rerr := p.rollback(p.files[:i])
			return errors.Join(fmt.Errorf("editing %s: %w", t.f.path, describe(err)), rerr)
		}
		t.replaced = true
	}
	for _, dir := range p.dirs() {
		if d, err := os.Open(dir); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}

// rollback puts back the files already replaced.
func (p *pendingFiles) rollback(done []*tempFile) error {
	var errs []error
	for _, t := range done {
		name, err := writeTemp(t.f.path, t.old)
		if err == nil {
			err = os.Rename(name, t.f.path)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("putting back %s: %w", t.f.path, err))
			continue
		}
		t.replaced = false
	}
	return errors.Join(errs...)
}

func (p *pendingFiles) dirs() []string {
	var out []string
	for _, t := range p.files {
		if d := filepath.Dir(t.f.path); len(out) == 0 || out[len(out)-1] != d {
			out = append(out, d)
		}
	}
	return out
}

func (p *pendingFiles) abort() {
	for _, t := range p.files {
		if !t.replaced {
			os.Remove(t.temp)
		}
	}
}
