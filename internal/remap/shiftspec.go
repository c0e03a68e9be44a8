package remap

import (
	"fmt"
	"strings"

	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
)

// MappingSpec parses the mapping forms `volperm shift` takes:
//
//   - host: no remapping, every id is itself;
//   - remap:USER[:GROUP]: dockerd's layout for that remap user;
//   - rootless:USER: rootless Docker/Podman: container 0 is the user, and
//     container 1.. its /etc/subuid (and /etc/subgid) ranges, in file order;
//   - ranges:C:H:N[,C:H:N...]: explicit extents, the same for uids and gids.
func MappingSpec(spec string, f Files, v idmap.Version) (idmap.Mapping, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "host":
		if arg != "" {
			return idmap.Mapping{}, fmt.Errorf("mapping %q: host takes no argument", spec)
		}
		return idmap.HostIdentity(), nil
	case "remap":
		r, err := Resolve(f, Sources{Flag: arg, Version: v})
		if err != nil {
			return idmap.Mapping{}, err
		}
		return r.Mapping, nil
	case "rootless":
		return rootless(arg, f)
	case "ranges":
		m, err := ParseExtents(arg)
		if err != nil {
			return idmap.Mapping{}, fmt.Errorf("mapping %q: %w", spec, err)
		}
		return idmap.Mapping{UID: m, GID: m}, nil
	}
	return idmap.Mapping{}, fmt.Errorf("mapping %q: want host, remap:USER[:GROUP], rootless:USER or ranges:C:H:N[,C:H:N...]", spec)
}

// ParseExtents reads "C:H:N[,C:H:N...]".
func ParseExtents(s string) (idmap.Map, error) {
	var m idmap.Map
	for i, part := range strings.Split(s, ",") {
		f := strings.Split(part, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("extent %d %q: want CONTAINER:HOST:SIZE", i+1, part)
		}
		var v [3]uint32
		for k, name := range []string{"container id", "host id", "size"} {
			n, err := identity.ParseID(f[k])
			if err != nil {
				return nil, fmt.Errorf("extent %d %q: %s: %v", i+1, part, name, err)
			}
			v[k] = n
		}
		m = append(m, idmap.Extent{Container: v[0], Host: v[1], Size: v[2]})
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func rootless(user string, f Files) (idmap.Mapping, error) {
	users, err := identity.ParsePasswdFile(f.Passwd)
	if err != nil {
		return idmap.Mapping{}, err
	}
	u, ok := users.ByName(user)
	if !ok {
		return idmap.Mapping{}, fmt.Errorf("rootless:%s: no such user in %s", user, f.Passwd)
	}
	var out idmap.Mapping
	for i, file := range []string{f.SubUID, f.SubGID} {
		lines, err := identity.ParseSubIDFile(file)
		if err != nil {
			return idmap.Mapping{}, err
		}
		self := u.UID
		if i == 1 {
			self = u.GID
		}
		m := idmap.Map{{Container: 0, Host: self, Size: 1}}
		next := uint64(1)
		for _, l := range lines {
			if l.Owner != u.Name && l.Owner != fmt.Sprint(u.UID) {
				continue
			}
			m = append(m, idmap.Extent{Container: uint32(next), Host: l.Start, Size: l.Count})
			next += uint64(l.Count)
		}
		if len(m) == 1 {
			return idmap.Mapping{}, fmt.Errorf("rootless:%s: no line for %s in %s (rootless Docker needs one)", user, user, file)
		}
		if err := m.Validate(); err != nil {
			return idmap.Mapping{}, fmt.Errorf("rootless:%s: %s: %w", user, file, err)
		}
		if i == 0 {
			out.UID = m
		} else {
			out.GID = m
		}
	}
	return out, nil
}
