package plan

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/acl"
	"github.com/volperm/volperm/internal/tree"
)

// TreeGrant grants (or removes) a named ACL entry on a path or a whole
// tree: the seed 004 fix for a host user who must edit files a remapped
// container wrote. Capital-X semantics; default entries on directories
// with Default; never through a symlink; one filesystem.
type TreeGrant struct {
	Path      string
	ID        uint32
	Group     bool
	Perm      string // "rwX" or "rX"
	Recursive bool
	Default   bool
	Remove    bool
}

// TreeResult counts what a grant did.
type TreeResult struct {
	Changed, Unchanged, Skipped int
}

// Run performs the grant.
func (g TreeGrant) Run(ctx context.Context) (TreeResult, error) {
	var res TreeResult
	if st, err := lstatNoLink(g.Path); err != nil {
		return res, err
	} else if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return res, fmt.Errorf("%s is not a file or directory", g.Path)
	}
	tag := acl.User
	if g.Group {
		tag = acl.Group
	}
	err := tree.Walk(ctx, g.Path, tree.Options{}, func(e *tree.Entry) error {
		if !e.IsDir() && !e.IsRegular() {
			res.Skipped++ // symlinks carry no ACL; special files are not opened
			return nil
		}
		fd, err := e.Open()
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		f := ACLFile{
			Get: func(x string) (acl.ACL, error) { return acl.GetFd(fd, x) },
			Set: func(x string, a acl.ACL) error { return acl.SetFd(fd, x, a) },
		}
		mode := e.Stat.Mode
		changed, err := EditACL(f, acl.AccessXattr, mode, tag, g.ID, PermBits(g.Perm, e.IsDir(), mode), g.Remove)
		if err != nil {
			return errnoFact("setting the ACL of", e.Path(), err)
		}
		if e.IsDir() && (g.Default || g.Remove) {
			c, err := EditACL(f, acl.DefaultXattr, mode, tag, g.ID, PermBits(g.Perm, true, mode), g.Remove)
			if err != nil {
				return errnoFact("setting the default ACL of", e.Path(), err)
			}
			changed = changed || c
		}
		if changed {
			res.Changed++
		} else {
			res.Unchanged++
		}
		if e.IsDir() && !g.Recursive && e.Path() == g.Path {
			return tree.ErrSkipDir
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	return res, nil
}
