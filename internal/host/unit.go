package host

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Unit is dockerd's systemd service, docker.service, as systemd would
// start it: the command line of its ExecStart with the variables of
// Environment= and EnvironmentFile= expanded (Debian's unit passes
// $DOCKER_OPTS from /etc/default/docker).
type Unit struct {
	Path    string   // the unit file, as on the host (without the root)
	DropIns []string // its drop-in files, in the order systemd reads them
	Args    []string // ExecStart: dockerd and its arguments
}

// unitDirs are where systemd looks for units, most important first.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// ReadDockerUnit reads docker.service under root ("/" for this host). It
// returns nil when there is no such unit, and an error naming the file
// and line when a line cannot be read.
func ReadDockerUnit(root string) (*Unit, error) {
	u := &Unit{}
	for _, d := range unitDirs {
		p := filepath.Join(d, "docker.service")
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			u.Path = p
			break
		}
	}
	if u.Path == "" {
		return nil, nil
	}
	// Drop-ins: *.conf of every docker.service.d, ordered by file name;
	// of equal names, the one in the more important directory wins.
	seen := map[string]bool{}
	for _, d := range unitDirs {
		ents, _ := os.ReadDir(filepath.Join(root, d, "docker.service.d"))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".conf") && !seen[e.Name()] {
				seen[e.Name()] = true
				u.DropIns = append(u.DropIns, filepath.Join(d, "docker.service.d", e.Name()))
			}
		}
	}
	slices.SortFunc(u.DropIns, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })

	var exec string
	env := map[string]string{}
	var envFiles []string
	for _, p := range append([]string{u.Path}, u.DropIns...) {
		err := unitEntries(filepath.Join(root, p), p, func(key, val string) error {
			switch key {
			case "ExecStart":
				exec = val // an empty ExecStart= resets; a unit of Type=notify has one
			case "Environment":
				for _, w := range unitWords(val) {
					if k, v, ok := strings.Cut(w, "="); ok {
						env[k] = v
					}
				}
			case "EnvironmentFile":
				if val == "" {
					envFiles = nil
				} else {
					envFiles = append(envFiles, val)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, f := range envFiles {
		optional := strings.HasPrefix(f, "-")
		f = strings.TrimPrefix(f, "-")
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			if optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("reading %s, the EnvironmentFile of %s: %w", f, u.Path, err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			if k, v, ok := strings.Cut(line, "="); ok {
				env[strings.TrimSpace(strings.TrimPrefix(k, "export "))] = unquote(strings.TrimSpace(v))
			}
		}
	}
	exec = strings.TrimLeft(exec, "-@+!:")
	for _, w := range unitWords(exec) {
		if name, ok := strings.CutPrefix(w, "$"); ok && isVarName(name) {
			// $VAR alone is split into words, ${VAR} is one word
			// (systemd.service(5), "Command lines").
			u.Args = append(u.Args, strings.Fields(env[name])...)
			continue
		}
		u.Args = append(u.Args, os.Expand(w, func(k string) string { return env[k] }))
	}
	return u, nil
}

// Process is the unit's command line as a Process, for its flags.
func (u *Unit) Process() Process { return Process{Args: u.Args} }

// unitEntries calls fn for each key=value of the [Service] section of a
// unit file, joining continued lines.
func unitEntries(path, name string, fn func(key, val string) error) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading systemd unit: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	section, n, pending, start := "", 0, "", 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if pending == "" {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s:%d: want KEY=VALUE, found %q", name, start, line)
		}
		if section == "Service" {
			if err := fn(strings.TrimSpace(key), strings.TrimSpace(val)); err != nil {
				return err
			}
		}
	}
	return sc.Err()
}

// unitWords splits a systemd command line or assignment list into words,
// honouring double and single quotes.
func unitWords(s string) []string {
	var words []string
	var b strings.Builder
	var quote rune
	in := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			b.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, b.String())
	}
	return words
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

func isVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r != '_' && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// StartedBySystemd reports whether the process runs in the cgroup of
// docker.service, so that a restart of the service restarts it (procRoot
// is normally /proc).
func (p Process) StartedBySystemd(procRoot string) bool {
	data, err := os.ReadFile(filepath.Join(procRoot, fmt.Sprint(p.PID), "cgroup"))
	return err == nil && bytes.Contains(data, []byte("/docker.service"))
}

// SystemdRunning reports whether systemd manages the host under root, as
// sd_booted(3) tells: /run/systemd/system exists.
func SystemdRunning(root string) bool {
	st, err := os.Stat(filepath.Join(root, "run/systemd/system"))
	return err == nil && st.IsDir()
}
