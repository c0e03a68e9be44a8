// Package access decides, as the Linux kernel does, whether a process with
// given host ids may read, write or search a file: owner, group and other
// bits, POSIX ACL entries limited by the mask, and the CAP_DAC_OVERRIDE of
// root — which inside a user namespace only applies to inodes whose owner
// and group are both mapped (fs/namei.c generic_permission,
// fs/posix_acl.c posix_acl_permission, kernel/capability.c
// privileged_wrt_inode_uidgid).
//
// It works on plain metadata so it is testable without a filesystem; Stat
// is the thin adapter to real files. It does not consider LSMs (SELinux,
// AppArmor), read-only mounts or immutable flags.
package access

import (
	"fmt"
	"slices"
	"strings"

	"github.com/volperm/volperm/internal/acl"
	"github.com/volperm/volperm/internal/idmap"
)

// Want is a set of access bits: acl.Read, acl.Write, acl.Execute.
type Want = uint16

// File is the metadata that decides access.
type File struct {
	UID, GID uint32
	Mode     uint32 // permission bits (07777)
	Dir      bool
	ACL      acl.ACL // the access ACL, nil when the file has none
}

// Cred is a process's host-side credentials.
type Cred struct {
	UID  uint32
	GIDs []uint32 // primary gid first, then supplementary gids
	// CapDAC is true for a root process with its default capabilities
	// (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH).
	CapDAC bool
	// Userns is the process's user namespace; nil for the initial one.
	Userns *idmap.Mapping
}

// Decision is the answer and the reason, in uid terms.
type Decision struct {
	Allowed bool
	Reason  string
}

// Check decides whether c may have every bit of want on f.
func Check(f File, c Cred, want Want) Decision {
	if c.CapDAC {
		if d, ok := capOverride(f, c, want); ok {
			return d
		}
	}
	perm, why := classPerm(f, c)
	if perm&want == want {
		return Decision{true, fmt.Sprintf("%s: %s", why, acl.PermString(perm))}
	}
	return Decision{false, fmt.Sprintf("%s: %s, but %s is needed", why, acl.PermString(perm), wantString(want))}
}

func capOverride(f File, c Cred, want Want) (Decision, bool) {
	if c.Userns != nil {
		_, uok := c.Userns.UID.ToContainer(f.UID)
		_, gok := c.Userns.GID.ToContainer(f.GID)
		if !uok || !gok {
			return Decision{}, false // falls through to the mode bits: see below
		}
	}
	if f.Dir || want&acl.Execute == 0 || f.Mode&0o111 != 0 {
		return Decision{true, "root's CAP_DAC_OVERRIDE applies (owner and group are mapped)"}, true
	}
	return Decision{}, false
}

// classPerm finds the permission class the kernel applies to c on f.
func classPerm(f File, c Cred) (uint16, string) {
	if c.UID == f.UID {
		return uint16(f.Mode>>6) & 7, fmt.Sprintf("uid %d owns it: owner bits", c.UID)
	}
	if f.ACL != nil && !f.ACL.Minimal() {
		return aclPerm(f, c)
	}
	if slices.Contains(c.GIDs, f.GID) {
		return uint16(f.Mode>>3) & 7, fmt.Sprintf("uid %d is not the owner (%d) but gid %d is the file's group: group bits", c.UID, f.UID, f.GID)
	}
	return uint16(f.Mode) & 7, fmt.Sprintf("uid %d is neither the owner (%d) nor in the group (%d): other bits", c.UID, f.UID, f.GID)
}

func aclPerm(f File, c Cred) (uint16, string) {
	mask := uint16(7)
	if m, ok := f.ACL.Find(acl.Mask, 0); ok {
		mask = m.Perm
	}
	if e, ok := f.ACL.Find(acl.User, c.UID); ok {
		return e.Perm & mask, fmt.Sprintf("ACL entry user:%d:%s (mask %s)", c.UID, acl.PermString(e.Perm), acl.PermString(mask))
	}
	// Group class: every matching group entry is considered; any one that
	// grants the access is enough, so the union is what counts.
	var perm uint16
	var matched []string
	for _, e := range f.ACL {
		switch {
		case e.Tag == acl.GroupObj && slices.Contains(c.GIDs, f.GID):
			perm |= e.Perm
			matched = append(matched, fmt.Sprintf("group::%s (gid %d)", acl.PermString(e.Perm), f.GID))
		case e.Tag == acl.Group && slices.Contains(c.GIDs, e.ID):
			perm |= e.Perm
			matched = append(matched, fmt.Sprintf("group:%d:%s", e.ID, acl.PermString(e.Perm)))
		}
	}
	if len(matched) > 0 {
		return perm & mask, fmt.Sprintf("ACL entries %s (mask %s)", strings.Join(matched, ", "), acl.PermString(mask))
	}
	o, _ := f.ACL.Find(acl.Other, 0)
	return o.Perm, fmt.Sprintf("uid %d has no ACL entry and none of its groups does: ACL other", c.UID)
}

func wantString(w Want) string {
	var s []string
	if w&acl.Read != 0 {
		s = append(s, "read")
	}
	if w&acl.Write != 0 {
		s = append(s, "write")
	}
	if w&acl.Execute != 0 {
		s = append(s, "search/execute")
	}
	return strings.Join(s, "+")
}
