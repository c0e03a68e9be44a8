package identity

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// User is one /etc/passwd entry.
type User struct {
	Name  string
	UID   uint32
	GID   uint32
	Gecos string
	Home  string
	Shell string
	Line  int
}

// Group is one /etc/group entry.
type Group struct {
	Name    string
	GID     uint32
	Members []string
	Line    int
}

// Users is a parsed passwd file, in file order.
type Users []User

// Groups is a parsed group file, in file order.
type Groups []Group

// ByName returns the first user called name; the first entry wins, as in
// getpwnam(3) and in the daemon's own lookup.
func (us Users) ByName(name string) (User, bool) {
	for _, u := range us {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// ByUID returns the first user with that uid.
func (us Users) ByUID(uid uint32) (User, bool) {
	for _, u := range us {
		if u.UID == uid {
			return u, true
		}
	}
	return User{}, false
}

// ByName returns the first group called name.
func (gs Groups) ByName(name string) (Group, bool) {
	for _, g := range gs {
		if g.Name == name {
			return g, true
		}
	}
	return Group{}, false
}

// ByGID returns the first group with that gid.
func (gs Groups) ByGID(gid uint32) (Group, bool) {
	for _, g := range gs {
		if g.GID == gid {
			return g, true
		}
	}
	return Group{}, false
}

// skipLine reports lines that carry no entry: blank lines, comments, and NIS
// compat lines ("+user", "-@netgroup", "+::::::") that only glibc's compat
// module understands.
func skipLine(s string) bool {
	return s == "" || s[0] == '#' || s[0] == '+' || s[0] == '-'
}

// scanLines calls fn for every line of r that carries an entry, with the line
// trimmed of surrounding white space and its 1-based number.
func scanLines(r io.Reader, fn func(line string, n int) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if skipLine(line) {
			continue
		}
		if err := fn(line, n); err != nil {
			return err
		}
	}
	return sc.Err()
}

// ParsePasswd parses passwd(5) text. file names the source in errors.
func ParsePasswd(r io.Reader, file string) (Users, error) {
	var us Users
	err := scanLines(r, func(line string, n int) error {
		f := strings.Split(line, ":")
		if len(f) != 7 {
			return &LineError{File: file, Line: n, Msg: fmt.Sprintf("want 7 fields name:password:uid:gid:gecos:home:shell, found %d", len(f))}
		}
		if f[0] == "" {
			return &LineError{File: file, Line: n, Field: "name", Msg: "empty"}
		}
		uid, err := ParseID(f[2])
		if err != nil {
			return &LineError{File: file, Line: n, Field: "uid", Msg: err.Error()}
		}
		gid, err := ParseID(f[3])
		if err != nil {
			return &LineError{File: file, Line: n, Field: "gid", Msg: err.Error()}
		}
		us = append(us, User{Name: f[0], UID: uid, GID: gid, Gecos: f[4], Home: f[5], Shell: f[6], Line: n})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return us, nil
}

// ParseGroup parses group(5) text. file names the source in errors.
func ParseGroup(r io.Reader, file string) (Groups, error) {
	var gs Groups
	err := scanLines(r, func(line string, n int) error {
		f := strings.Split(line, ":")
		if len(f) != 4 {
			return &LineError{File: file, Line: n, Msg: fmt.Sprintf("want 4 fields name:password:gid:members, found %d", len(f))}
		}
		if f[0] == "" {
			return &LineError{File: file, Line: n, Field: "name", Msg: "empty"}
		}
		gid, err := ParseID(f[2])
		if err != nil {
			return &LineError{File: file, Line: n, Field: "gid", Msg: err.Error()}
		}
		var members []string
		for m := range strings.SplitSeq(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		gs = append(gs, Group{Name: f[0], GID: gid, Members: members, Line: n})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gs, nil
}

// ParsePasswdFile opens and parses a passwd file.
func ParsePasswdFile(path string) (Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading passwd file: %w", err)
	}
	defer f.Close()
	return ParsePasswd(f, path)
}

// ParseGroupFile opens and parses a group file.
func ParseGroupFile(path string) (Groups, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading group file: %w", err)
	}
	defer f.Close()
	return ParseGroup(f, path)
}
