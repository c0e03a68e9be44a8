package userns

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"

	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
)

// Version20 is the oldest daemon whose /etc/subuid reading volperm
// emulates. Daemons before 28.0 use the lines keyed by the user's uid when
// there are any and the lines keyed by name only otherwise; 28.0 and later
// use both, in file order. Planned lines are keyed by name only, so that
// every daemon builds the same map from them.
var Version20 = idmap.Version{Major: 20, Minor: 10}

// Replaced is the prefix of a line volperm took out of use: a comment to
// shadow-utils and to every dockerd (before 23.0 dockerd reads it as a
// line of a user called "#", which never matches).
const Replaced = "# replaced by volperm userns: "

// side is the planning of one file, /etc/subuid or /etc/subgid.
type side struct {
	f       file
	lines   []identity.SubID
	user    string // the remap user's name
	uid     string // its uid as text; "" when not known yet
	root    *uint32
	size    uint32
	account map[uint32]string // real accounts of this id space (users or groups)

	action string // kept, inserted, replaced, added
	mine   []identity.SubID
}

func (s *side) isMine(l identity.SubID) bool {
	return l.Owner == s.user || s.uid != "" && l.Owner == s.uid
}

// uses are the lines dockerd uses for the user, and whether daemons of
// every version agree on them.
func (s *side) uses() ([]identity.SubID, bool) {
	uid := uint32(identity.MaxID)
	if s.uid != "" {
		id, _ := strconv.ParseUint(s.uid, 10, 32)
		uid = uint32(id)
	}
	a := idmap.DockerLines(s.lines, s.user, uid, Version20)
	b := idmap.DockerLines(s.lines, s.user, uid, idmap.Latest)
	return b, slices.Equal(a, b)
}

// clean reports whether a line of the user's overlaps no other owner's
// line and covers no real account; why says what is wrong otherwise.
func (s *side) clean(l identity.SubID) (ok bool, why string) {
	for _, o := range s.lines {
		if !s.isMine(o) && o.Start <= l.Last() && l.Start <= o.Last() {
			return false, fmt.Sprintf("%s:%d (%s:%d:%d) overlaps line %d of %s", s.f.Path, l.Line, l.Owner, l.Start, l.Count, o.Line, o.Owner)
		}
	}
	for id, name := range s.account {
		if l.Start <= id && id <= l.Last() {
			return false, fmt.Sprintf("%s:%d (%s:%d:%d) covers the real account %s (%d)", s.f.Path, l.Line, l.Owner, l.Start, l.Count, name, id)
		}
	}
	return true, ""
}

// decide chooses what to do with the file, without allocating: keep the
// user's lines when they already give the layout, insert the root line in
// front of usable ranges (seed 004's layout over an existing range), or
// replace them with new lines. why explains a replacement.
func (s *side) decide() (why string) {
	for _, l := range s.lines {
		if s.isMine(l) {
			s.mine = append(s.mine, l)
		}
	}
	if len(s.mine) == 0 {
		s.action = "added"
		return ""
	}
	use, agree := s.uses()
	if !agree {
		// Lines keyed by name and by uid: daemons before 28.0 use only the
		// uid lines, later ones both. The name lines stay when they are
		// enough on their own.
		var named []identity.SubID
		for _, l := range s.mine {
			if l.Owner == s.user {
				named = append(named, l)
			}
		}
		if ok, _ := s.usable(named, s.size); ok && s.root == nil {
			s.action = "unkeyed"
			return ""
		}
		s.action = "replaced"
		return fmt.Sprintf("%s has lines for %s keyed by name and by uid: daemons before 28.0 use only the uid lines, later ones both", s.f.Path, s.user)
	}
	rest, need := use, s.size
	if s.root != nil {
		need = s.size - 1
		if use[0].Start == *s.root && use[0].Count == 1 {
			rest = use[1:]
		} else {
			rest = nil
		}
	}
	if rest != nil || s.root == nil {
		if ok, why := s.usable(rest, need); ok {
			s.action = "kept"
			return ""
		} else if s.root == nil {
			s.action = "replaced"
			return why
		}
	}
	// Host-user layout: put the root line in front of the user's ranges
	// when they can carry container ids 1.. as they are.
	ok, why := s.usable(s.mine, need)
	for _, l := range s.mine {
		if _, err := strconv.ParseUint(l.Owner, 10, 32); err == nil {
			ok, why = false, fmt.Sprintf("%s:%d is keyed by uid; the planned lines are keyed by name", s.f.Path, l.Line)
		}
		if l.Start <= *s.root && *s.root <= l.Last() {
			ok, why = false, fmt.Sprintf("%s:%d (%s:%d:%d) contains the host id %d that becomes container root", s.f.Path, l.Line, l.Owner, l.Start, l.Count, *s.root)
		}
	}
	if ok {
		s.action = "inserted"
		return ""
	}
	s.action = "replaced"
	return why
}

// usable reports whether ranges give at least need ids, form a valid map
// and are clean.
func (s *side) usable(ranges []identity.SubID, need uint32) (bool, string) {
	m := idmap.Pack(ranges)
	if err := m.Validate(); err != nil {
		return false, fmt.Sprintf("the ranges of %s in %s do not form a valid map: %v", s.user, s.f.Path, err)
	}
	if m.Size() < uint64(need) {
		return false, fmt.Sprintf("the ranges of %s in %s give %d ids, fewer than %d", s.user, s.f.Path, m.Size(), need)
	}
	for _, l := range ranges {
		if ok, why := s.clean(l); !ok {
			return false, why
		}
	}
	return true, ""
}

// edit writes the decision into the file's text; start is the first id of
// a newly allocated range (used by "added" and "replaced").
func (s *side) edit(start uint32) []byte {
	data := s.f.Data
	if s.action == "kept" {
		return data
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	var rootLine []byte
	if s.root != nil {
		rootLine = fmt.Appendf(nil, "%s:%d:1\n", s.user, *s.root)
	}
	var out bytes.Buffer
	for i, l := range lines {
		n := i + 1
		mineHere := slices.ContainsFunc(s.mine, func(m identity.SubID) bool { return m.Line == n })
		switch {
		case s.action == "inserted" && n == s.mine[0].Line:
			out.Write(rootLine)
			out.Write(l)
		case s.action == "replaced" && mineHere, s.action == "unkeyed" && mineHere && !bytes.HasPrefix(bytes.TrimLeft(l, " \t"), []byte(s.user+":")):
			out.WriteString(Replaced)
			out.Write(bytes.TrimLeft(l, " \t"))
		default:
			out.Write(l)
		}
		if i == len(lines)-1 && !bytes.HasSuffix(l, []byte("\n")) {
			out.WriteByte('\n')
		}
	}
	if s.action == "added" || s.action == "replaced" {
		if s.root != nil {
			out.Write(rootLine)
			if s.size > 1 {
				fmt.Fprintf(&out, "%s:%d:%d\n", s.user, start, s.size-1)
			}
		} else {
			fmt.Fprintf(&out, "%s:%d:%d\n", s.user, start, s.size)
		}
	}
	return out.Bytes()
}

// needsRange reports whether the edit adds a new range.
func (s *side) needsRange() bool {
	return (s.action == "added" || s.action == "replaced") && (s.root == nil || s.size > 1)
}

// allocate finds a start where n ids are free in both files: no other
// owner's range, no real account or group, not the root ids. The same
// start in both files keeps the data root's name symmetric
// (/var/lib/docker/100000.100000).
func allocate(sides []*side, n uint32) (uint32, error) {
	var taken []identity.SubID
	for _, s := range sides {
		for _, l := range s.lines {
			if !s.isMine(l) {
				taken = append(taken, l)
			}
		}
		for id := range s.account {
			taken = append(taken, identity.SubID{Start: id, Count: 1})
		}
		if s.root != nil {
			taken = append(taken, identity.SubID{Start: *s.root, Count: 1})
		}
	}
	start, ok := idmap.FreeRange(taken, n)
	if !ok {
		return 0, fmt.Errorf("no free range of %d ids at or above %d in %s and %s", n, idmap.DefaultRangeStart, sides[0].f.Path, sides[1].f.Path)
	}
	return start, nil
}
