// Package workload is the model every source of containers is turned into —
// a compose service, a created or running container — so the diagnostic
// rules never know where a workload came from. It does no I/O.
package workload

import (
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
)

// Workload is one container, planned or real.
type Workload struct {
	Name   string // compose service or container name
	Origin Origin
	Image  string

	// UserSpec is the effective --user spec ("" is the image's default,
	// root); UserFrom says where it came from.
	UserSpec string
	UserFrom string
	// UserRaw is compose's `user:` as written, before interpolation.
	UserRaw string
	// User is UserSpec resolved against the image's /etc/passwd and
	// /etc/group; nil when that could not be checked (see Unknown).
	User *identity.ExecUser
	// UserErr is the daemon's refusal of UserSpec or GroupAdd (the
	// container will not start).
	UserErr error
	// GroupAdd is group_add / --group-add as written; GroupAddGIDs the
	// resolved gids (nil when unknown).
	GroupAdd     []string
	GroupAddGIDs []uint32

	// UsernsMode is "" (the daemon's remap applies) or "host".
	UsernsMode string
	// Mapping is the user namespace the container runs in; Remapped is
	// false for the host's identity mapping.
	Mapping  idmap.Mapping
	Remapped bool

	Mounts []Mount
	// Unknown lists facts that could not be checked, for the user.
	Unknown []string
}

// Origin points at where a workload is defined.
type Origin struct {
	File      string // compose file, when from compose
	Line      int    // line of the service, when known
	Container string // container id, when from the Engine API
}

// Mount is one volume or bind mount.
type Mount struct {
	Type     string // "bind", "volume", "tmpfs", ...
	Source   string // host path for binds, volume name for volumes
	Target   string
	ReadOnly bool
	// CreateSource is true when the daemon creates a missing bind source
	// (legacy -v / Binds, compose short syntax, create_host_path: true).
	CreateSource bool
	Line         int // compose line of the volume entry, when known
}

// HostIDs returns the host-side uid and gids the workload's process runs
// with: the resolved user's uid, primary gid, supplementary gids and
// group_add gids, each through the workload's mapping. ok is false when the
// user is unknown.
func (w *Workload) HostIDs() (uid uint32, gids []uint32, ok bool) {
	if w.User == nil {
		return 0, nil, false
	}
	uid, _ = w.Mapping.UID.ToHost(w.User.UID)
	add := func(g uint32) {
		h, _ := w.Mapping.GID.ToHost(g)
		for _, x := range gids {
			if x == h {
				return
			}
		}
		gids = append(gids, h)
	}
	add(w.User.GID)
	for _, g := range w.User.SGIDs {
		add(g)
	}
	for _, g := range w.GroupAddGIDs {
		add(g)
	}
	return uid, gids, true
}

// ContainerGIDs is the container-side group list, primary first.
func (w *Workload) ContainerGIDs() []uint32 {
	if w.User == nil {
		return nil
	}
	gids := []uint32{w.User.GID}
	for _, g := range append(append([]uint32{}, w.User.SGIDs...), w.GroupAddGIDs...) {
		dup := false
		for _, x := range gids {
			dup = dup || x == g
		}
		if !dup {
			gids = append(gids, g)
		}
	}
	return gids
}
