// Package idmap translates user and group IDs between a container and the
// host, the way the kernel does for a user namespace and the way dockerd lays
// out a userns-remap from /etc/subuid and /etc/subgid.
//
// It is pure: no files, no daemon. Parsing of /etc/subuid lines lives in
// package identity; this package takes the parsed lines.
package idmap

import (
	"fmt"
	"strings"
)

// Overflow is the id the kernel shows for a host id that has no mapping in a
// user namespace (/proc/sys/kernel/overflowuid and overflowgid, 65534 by
// default): "nobody"/"nogroup" inside the container.
const Overflow = 65534

// Extent maps Size consecutive ids: container id Container+i is host id
// Host+i. It is one line of /proc/PID/uid_map ("inside outside count").
type Extent struct {
	Container uint32 `json:"container"`
	Host      uint32 `json:"host"`
	Size      uint32 `json:"size"`
}

// Map is an ordered list of extents, as the kernel holds it. The first extent
// that covers an id wins, as in the kernel's map_id_down/map_id_up.
type Map []Extent

// Identity is the map of the initial user namespace: every id is itself.
func Identity() Map { return Map{{Container: 0, Host: 0, Size: 1<<32 - 1}} }

// ToHost returns the host id for container id id, and whether it is mapped.
func (m Map) ToHost(id uint32) (uint32, bool) {
	for _, e := range m {
		if id >= e.Container && uint64(id) < uint64(e.Container)+uint64(e.Size) {
			return e.Host + (id - e.Container), true
		}
	}
	return Overflow, false
}

// ToContainer returns the container id for host id id, and whether it is
// mapped. An unmapped host id shows inside the container as Overflow.
func (m Map) ToContainer(id uint32) (uint32, bool) {
	for _, e := range m {
		if id >= e.Host && uint64(id) < uint64(e.Host)+uint64(e.Size) {
			return e.Container + (id - e.Host), true
		}
	}
	return Overflow, false
}

// Size is the number of container ids the map covers.
func (m Map) Size() uint64 {
	var n uint64
	for _, e := range m {
		n += uint64(e.Size)
	}
	return n
}

// IsIdentity reports whether every id maps to itself, as without remapping.
func (m Map) IsIdentity() bool {
	return len(m) == 1 && m[0].Container == 0 && m[0].Host == 0 && m[0].Size == 1<<32-1
}

// Validate checks what the kernel checks when the map is written to
// /proc/PID/uid_map: non-empty extents that stay inside the id space and do
// not overlap on either side.
func (m Map) Validate() error {
	for i, e := range m {
		if e.Size == 0 {
			return fmt.Errorf("extent %d (%d %d %d) is empty", i+1, e.Container, e.Host, e.Size)
		}
		if uint64(e.Container)+uint64(e.Size) > 1<<32-1 || uint64(e.Host)+uint64(e.Size) > 1<<32-1 {
			return fmt.Errorf("extent %d (%d %d %d) runs past the id space", i+1, e.Container, e.Host, e.Size)
		}
		for j, f := range m[:i] {
			if overlap(e.Container, e.Size, f.Container, f.Size) {
				return fmt.Errorf("extents %d and %d overlap on the container side", j+1, i+1)
			}
			if overlap(e.Host, e.Size, f.Host, f.Size) {
				return fmt.Errorf("extents %d and %d overlap on the host side", j+1, i+1)
			}
		}
	}
	return nil
}

func overlap(a, an, b, bn uint32) bool {
	return uint64(a) < uint64(b)+uint64(bn) && uint64(b) < uint64(a)+uint64(an)
}

// String renders the map like /proc/PID/uid_map.
func (m Map) String() string {
	var b strings.Builder
	for _, e := range m {
		fmt.Fprintf(&b, "%10d %10d %10d\n", e.Container, e.Host, e.Size)
	}
	return b.String()
}

// Mapping is the pair of maps a container runs with.
type Mapping struct {
	UID Map
	GID Map
}

// HostIdentity is the mapping without remapping.
func HostIdentity() Mapping { return Mapping{UID: Identity(), GID: Identity()} }

// IsIdentity reports whether the mapping changes nothing.
func (m Mapping) IsIdentity() bool { return m.UID.IsIdentity() && m.GID.IsIdentity() }

// Pair is a uid and a gid.
type Pair struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// ToHost translates a container uid:gid; ok is false when either is unmapped
// (that one is then Overflow).
func (m Mapping) ToHost(p Pair) (Pair, bool) {
	u, uok := m.UID.ToHost(p.UID)
	g, gok := m.GID.ToHost(p.GID)
	return Pair{u, g}, uok && gok
}

// ToContainer translates a host uid:gid; ok is false when either is unmapped.
func (m Mapping) ToContainer(p Pair) (Pair, bool) {
	u, uok := m.UID.ToContainer(p.UID)
	g, gok := m.GID.ToContainer(p.GID)
	return Pair{u, g}, uok && gok
}

// RootPair is the host uid:gid of container root: dockerd's
// IdentityMapping.RootPair, the owner it gives to the bind sources it creates
// and the name of its data-root subdirectory.
func (m Mapping) RootPair() Pair {
	p, _ := m.ToHost(Pair{})
	return p
}

// RootDirSuffix is the directory dockerd appends to its data root when
// remapping is on ("100000.100000"; daemon/daemon_unix.go setupDaemonRoot).
func (m Mapping) RootDirSuffix() string {
	r := m.RootPair()
	return fmt.Sprintf("%d.%d", r.UID, r.GID)
}
