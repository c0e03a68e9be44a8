package idmap

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/volperm/volperm/internal/identity"
)

// Version is a dockerd version. The daemon changed which /etc/subuid lines
// it uses and what it prints when none match; Version selects the behaviour.
type Version struct{ Major, Minor, Patch int }

// Latest is the behaviour of the newest daemon this package knows
// (docker-v29.7 and later), used when the daemon's version is unknown.
var Latest = Version{29, 7, 0}

// ParseVersion reads a dockerd version such as "20.10.24+dfsg1", "28.2.2" or
// "docker-v29.7.2".
func ParseVersion(s string) (Version, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "docker-"), "v")
	if i := strings.IndexAny(t, "+-~ "); i >= 0 {
		t = t[:i]
	}
	parts := strings.Split(t, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Version{}, fmt.Errorf("daemon version %q: want MAJOR.MINOR[.PATCH]", s)
	}
	var v [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Version{}, fmt.Errorf("daemon version %q: %q is not a number", s, p)
		}
		v[i] = n
	}
	return Version{v[0], v[1], v[2]}, nil
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less orders versions.
func (v Version) Less(w Version) bool {
	return slices.Compare([]int{v.Major, v.Minor, v.Patch}, []int{w.Major, w.Minor, w.Patch}) < 0
}

// DockerLines picks the lines of a subuid or subgid file that dockerd uses
// for remap user name (whose uid is uid), in the order it uses them. The
// order is never sorted: the daemon packs the ranges in this order.
//
//   - up to 27.x: lines keyed by the uid; only if there are none, lines
//     keyed by name (observed on dockerd 20.10.24: with "<uid>:500000:10"
//     and "<name>:100000:65536" the map is 0 500000 10 alone).
//   - 28.0 and later: lines keyed by name or uid, in file order
//     (daemon/internal/usergroup/lookup_unix.go lookupSubRangesFile).
//
// Daemons before 20.10 used the group name for /etc/subgid; they are treated
// as 20.10.
func DockerLines(lines []identity.SubID, name string, uid uint32, v Version) []identity.SubID {
	ustr := strconv.FormatUint(uint64(uid), 10)
	byName := func(s identity.SubID) bool { return s.Owner == name }
	byUID := func(s identity.SubID) bool { return s.Owner == ustr }
	pick := func(keep func(identity.SubID) bool) []identity.SubID {
		var out []identity.SubID
		for _, s := range lines {
			if keep(s) {
				out = append(out, s)
			}
		}
		return out
	}
	if v.Less(Version{28, 0, 0}) {
		if out := pick(byUID); len(out) > 0 {
			return out
		}
		return pick(byName)
	}
	return pick(func(s identity.SubID) bool { return byName(s) || byUID(s) })
}

// Pack lays ranges end to end from container id 0, as dockerd's
// createIDMap does: the first range maps container 0..c1-1, the next
// c1..c1+c2-1, and so on.
func Pack(lines []identity.SubID) Map {
	var m Map
	var next uint64
	for _, s := range lines {
		if next > identity.MaxID {
			break
		}
		size := uint64(s.Count)
		if next+size > 1<<32-1 {
			size = 1<<32 - 1 - next
		}
		m = append(m, Extent{Container: uint32(next), Host: s.Start, Size: uint32(size)})
		next += size
	}
	return m
}

// NoRangesError is dockerd's refusal to start when the remap user has no
// line in /etc/subuid or /etc/subgid.
type NoRangesError struct {
	File    string // the file without a line
	User    string
	Version Version
	Suggest string // a line that would fix it, e.g. "vp:100000:65536"
}

// DaemonMessage is the exact text the daemon of that version prints before
// exiting.
func (e *NoRangesError) DaemonMessage() string {
	kind := "subuid"
	if strings.HasSuffix(e.File, "subgid") && e.Version.Less(Version{28, 0, 0}) {
		kind = "subgid"
	}
	return MappingsError(e.Version, fmt.Sprintf("no %s ranges found for user %q", kind, e.User))
}

// MappingsError is how dockerd of version v words a failure to build the
// remap's ID mappings from /etc/subuid and /etc/subgid (setupRemappedRoot
// in daemon/daemon_unix.go).
func MappingsError(v Version, inner string) string {
	if v.Less(Version{29, 7, 0}) {
		return "Can't create ID mappings: " + inner
	}
	return "error creating ID mappings: " + inner
}

func (e *NoRangesError) Error() string {
	return fmt.Sprintf("%s has no line for remap user %q: dockerd %s will not start (%q); add a line such as %q",
		e.File, e.User, e.Version, e.DaemonMessage(), e.Suggest)
}

// DefaultRangeStart and DefaultRangeSize are dockerd's constants for the
// ranges it allocates to dockremap (daemon/internal/usergroup/add_linux.go).
const (
	DefaultRangeStart = 100000
	DefaultRangeSize  = 65536
)

// FreeRange returns the first start at or above DefaultRangeStart where size
// ids overlap no existing line, as dockerd's findNextRangeStart does.
func FreeRange(lines []identity.SubID, size uint32) (uint32, bool) {
	sorted := slices.Clone(lines)
	slices.SortFunc(sorted, func(a, b identity.SubID) int { return int(int64(a.Start) - int64(b.Start)) })
	start := uint64(DefaultRangeStart)
	for _, s := range sorted {
		if start+uint64(size) <= uint64(s.Start) {
			continue
		}
		if end := uint64(s.Start) + uint64(s.Count); start < end && start+uint64(size) > uint64(s.Start) {
			start = end
		}
	}
	if start+uint64(size)-1 > identity.MaxID {
		return 0, false
	}
	return uint32(start), true
}

// DockerMap builds the map dockerd of version v uses for remap user name
// (uid uid) from the lines of one file (file names it in errors).
func DockerMap(lines []identity.SubID, file, name string, uid uint32, v Version) (Map, error) {
	use := DockerLines(lines, name, uid, v)
	if len(use) == 0 {
		start, _ := FreeRange(lines, DefaultRangeSize)
		return nil, &NoRangesError{File: file, User: name, Version: v,
			Suggest: fmt.Sprintf("%s:%d:%d", name, start, DefaultRangeSize)}
	}
	m := Pack(use)
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: ranges of %q (lines %s): %w; the kernel will refuse this map and containers will not start",
			file, name, lineList(use), err)
	}
	return m, nil
}

func lineList(lines []identity.SubID) string {
	s := make([]string, len(lines))
	for i, l := range lines {
		s[i] = strconv.Itoa(l.Line)
	}
	return strings.Join(s, ", ")
}
