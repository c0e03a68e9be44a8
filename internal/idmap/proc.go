package idmap

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/volperm/volperm/internal/identity"
)

// ParseProc parses /proc/PID/uid_map or gid_map text: lines of
// "inside outside count" separated by spaces. Read from the initial user
// namespace, inside is the container id and outside the host id.
func ParseProc(r io.Reader, file string) (Map, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	var m Map
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, &identity.LineError{File: file, Line: i + 1, Msg: fmt.Sprintf("want 3 fields inside outside count, found %d", len(f))}
		}
		var v [3]uint32
		for k, name := range []string{"inside", "outside", "count"} {
			n, err := identity.ParseID(f[k])
			if err != nil && !(k == 2 && f[k] == "4294967295") {
				return nil, &identity.LineError{File: file, Line: i + 1, Field: name, Msg: err.Error()}
			}
			if err != nil {
				n = 1<<32 - 1 // the initial namespace's "0 0 4294967295"
			}
			v[k] = n
		}
		m = append(m, Extent{Container: v[0], Host: v[1], Size: v[2]})
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}

// ReadProcess reads the uid and gid maps of a running process.
func ReadProcess(pid int) (Mapping, error) {
	var out Mapping
	for _, kind := range []string{"uid_map", "gid_map"} {
		path := fmt.Sprintf("/proc/%d/%s", pid, kind)
		f, err := os.Open(path)
		if err != nil {
			return Mapping{}, fmt.Errorf("reading id map of process %d: %w", pid, err)
		}
		m, err := ParseProc(f, path)
		f.Close()
		if err != nil {
			return Mapping{}, err
		}
		if kind == "uid_map" {
			out.UID = m
		} else {
			out.GID = m
		}
	}
	return out, nil
}
