package userns

import (
	"fmt"
	"strings"

	"github.com/volperm/volperm/internal/idmap"
)

// Effects is what a plan does to the data that exists: dockerd keeps it
// under the root it used so far, and starts from the root the remap gives.
type Effects struct {
	From Store `json:"from"` // the root dockerd uses now
	To   Store `json:"to"`   // its root after the restart
	// Shift are the volperm shift arguments that re-own data written
	// under the old mapping for the new one.
	Shift string `json:"shift"`
}

// Effects works out what the plan does to existing data. now is the
// root dockerd uses now and nowMap its mapping (identity without remap).
func (p *Plan) Effects(sys System, now string, nowMap idmap.Mapping) Effects {
	e := Effects{From: CountStore(sys.Path(now)), To: CountStore(sys.Path(p.RootDir))}
	e.From.Dir, e.To.Dir = now, p.RootDir
	from := "--from host"
	if !nowMap.IsIdentity() {
		from = MappingArgs(nowMap, "--from")
	}
	e.Shift = from + " " + MappingArgs(p.Mapping, "--to")
	return e
}

// MappingArgs spells a mapping for volperm shift: flag ranges:C:H:N,...
// and, when the gid side differs, flag-gid with its own ranges. Explicit
// ranges do not depend on /etc/subuid, so the command means the same
// before and after an apply.
func MappingArgs(m idmap.Mapping, flag string) string {
	s := flag + " " + rangesSpec(m.UID)
	if m.GID.String() != m.UID.String() {
		s += " " + flag + "-gid " + rangesSpec(m.GID)
	}
	return s
}

func rangesSpec(m idmap.Map) string {
	parts := make([]string, len(m))
	for i, e := range m {
		parts[i] = fmt.Sprintf("%d:%d:%d", e.Container, e.Host, e.Size)
	}
	return "ranges:" + strings.Join(parts, ",")
}
