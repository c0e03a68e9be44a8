// Package benchtree generates the tree the shift benchmarks re-own (the
// Go benchmark and scripts/bench-shift.sh through cmd benchgen).
package benchtree

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/volperm/volperm/internal/acl"
)

// Generate writes a tree of about entries entries at root: directories of
// 50 under 100 top directories, owned by a mix of container ids (0, 33,
// 999, 1000, 65534; host ids base+id), 4% symlinks and 4% hardlinks, 2%
// setuid files and 3% files with an ACL entry. The same seed gives the
// same tree.
func Generate(root string, entries, base int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, seed))
	ids := []int{0, 0, 0, 33, 1000, 1000, 65534, 999}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	const perDir = 50
	dirs := entries / (perDir + 1)
	var prev string
	for d := range dirs {
		// A shallow, wide tree: 100 top directories.
		dir := filepath.Join(root, fmt.Sprintf("top%02d", d%100), fmt.Sprintf("d%06d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		id := base + ids[r.IntN(len(ids))]
		_ = os.Lchown(dir, id, id)
		for f := range perDir {
			p := filepath.Join(dir, fmt.Sprintf("f%02d", f))
			id := base + ids[r.IntN(len(ids))]
			switch k := r.IntN(100); {
			case k < 4 && prev != "":
				if err := os.Symlink(prev, p); err != nil {
					return err
				}
			case k < 8 && prev != "":
				if err := os.Link(prev, p); err != nil {
					return err
				}
				continue
			default:
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					return err
				}
				prev = p
			}
			if err := os.Lchown(p, id, id); err != nil {
				return err
			}
			switch k := r.IntN(100); {
			case k < 2:
				_ = os.Chmod(p, 0o4755)
			case k < 5:
				a := acl.ACL{{Tag: acl.UserObj, Perm: 6}, {Tag: acl.User, ID: uint32(base + 33), Perm: 6}, {Tag: acl.GroupObj, Perm: 4}, {Tag: acl.Mask, Perm: 6}, {Tag: acl.Other, Perm: 4}}
				_ = acl.Set(p, acl.AccessXattr, a)
			}
		}
	}
	return nil
}
