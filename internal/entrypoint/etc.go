package entrypoint

import (
	"strconv"
	"strings"
)

// etcFile is /etc/passwd or /etc/group as lines, edited in place: a line
// volperm does not change is written back byte for byte, including comments,
// NIS "+" lines and lines it cannot parse, which are also ignored for
// lookups as the C library ignores them.
type etcFile struct {
	path   string
	lines  []string // without their newlines
	final  bool     // the last line ended with a newline
	fields int      // 7 for passwd, 4 for group
	edited bool
}

func parseEtc(path string, data []byte, fields int) *etcFile {
	s := string(data)
	f := &etcFile{path: path, fields: fields, final: s == "" || strings.HasSuffix(s, "\n")}
	if s != "" {
		f.lines = strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	}
	return f
}

func (f *etcFile) bytes() []byte {
	s := strings.Join(f.lines, "\n")
	if len(f.lines) > 0 && f.final {
		s += "\n"
	}
	return []byte(s)
}

// entry returns line i's fields when it is a well-formed entry.
func (f *etcFile) entry(i int) ([]string, bool) {
	l := f.lines[i]
	if l == "" || l[0] == '#' || l[0] == '+' || l[0] == '-' {
		return nil, false
	}
	fs := strings.Split(l, ":")
	if len(fs) != f.fields || fs[0] == "" {
		return nil, false
	}
	if _, err := strconv.ParseUint(fs[f.idField()], 10, 32); err != nil {
		return nil, false
	}
	return fs, true
}

// idField is the index of the uid (passwd) or gid (group) field.
func (f *etcFile) idField() int { return 2 }

func (f *etcFile) id(fs []string) uint32 {
	n, _ := strconv.ParseUint(fs[f.idField()], 10, 32)
	return uint32(n)
}

// byName returns the index of the first entry named name, or -1.
func (f *etcFile) byName(name string) int {
	for i := range f.lines {
		if fs, ok := f.entry(i); ok && fs[0] == name {
			return i
		}
	}
	return -1
}

// byID returns the index of the first entry with id, or -1; skip is an
// index to pass over (the entry being moved).
func (f *etcFile) byID(id uint32, skip int) int {
	for i := range f.lines {
		if i == skip {
			continue
		}
		if fs, ok := f.entry(i); ok && f.id(fs) == id {
			return i
		}
	}
	return -1
}

// set changes field k of entry i.
func (f *etcFile) set(i, k int, v string) {
	fs, _ := f.entry(i)
	if fs[k] == v {
		return
	}
	fs[k] = v
	f.lines[i] = strings.Join(fs, ":")
	f.edited = true
}

// add appends an entry.
func (f *etcFile) add(fs ...string) {
	f.lines = append(f.lines, strings.Join(fs, ":"))
	f.final = true
	f.edited = true
}

// freeID returns the lowest id from start up that no entry uses.
func (f *etcFile) freeID(start uint32) uint32 {
	used := map[uint32]bool{}
	for i := range f.lines {
		if fs, ok := f.entry(i); ok {
			used[f.id(fs)] = true
		}
	}
	for id := start; ; id++ {
		if !used[id] {
			return id
		}
	}
}

// members returns a group entry's member list.
func members(fs []string) []string {
	if fs[3] == "" {
		return nil
	}
	return strings.Split(fs[3], ",")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
