package host

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is a running dockerd.
type Process struct {
	PID  int
	Args []string
}

// Flag returns the value of a dockerd flag given as --name=value or
// --name value (the last one wins, as with pflag).
func (p Process) Flag(names ...string) (string, bool) {
	var val string
	var found bool
	for i := 1; i < len(p.Args); i++ {
		a := p.Args[i]
		for _, n := range names {
			switch {
			case strings.HasPrefix(a, n+"="):
				val, found = a[len(n)+1:], true
			case a == n && i+1 < len(p.Args):
				val, found = p.Args[i+1], true
			}
		}
	}
	return val, found
}

// Hosts lists the -H/--host values of the process.
func (p Process) Hosts() []string {
	var hs []string
	for i := 1; i < len(p.Args); i++ {
		a := p.Args[i]
		switch {
		case strings.HasPrefix(a, "--host="):
			hs = append(hs, a[len("--host="):])
		case strings.HasPrefix(a, "-H="):
			hs = append(hs, a[len("-H="):])
		case (a == "-H" || a == "--host") && i+1 < len(p.Args):
			hs = append(hs, p.Args[i+1])
		case strings.HasPrefix(a, "-H") && len(a) > 2:
			hs = append(hs, a[2:])
		}
	}
	return hs
}

// DockerdProcesses lists the dockerd processes visible in procRoot
// (normally /proc).
func DockerdProcesses(procRoot string) []Process {
	ents, _ := os.ReadDir(procRoot)
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(data, "\x00")), "\x00")
		if filepath.Base(args[0]) != "dockerd" {
			continue
		}
		out = append(out, Process{PID: pid, Args: args})
	}
	return out
}

// DefaultSocket is dockerd's default listener.
const DefaultSocket = "unix:///var/run/docker.sock"

// ServingDockerd picks the dockerd that serves endpoint (a DOCKER_HOST value
// such as unix:///var/run/docker.sock) among procs, or false. A daemon with
// no -H, or with fd:// (systemd socket activation), serves the default
// socket.
func ServingDockerd(procs []Process, endpoint string) (Process, bool) {
	want := normalizeHost(endpoint)
	for _, p := range procs {
		hs := p.Hosts()
		if len(hs) == 0 {
			hs = []string{DefaultSocket}
		}
		for _, h := range hs {
			if strings.HasPrefix(h, "fd://") {
				h = DefaultSocket
			}
			if normalizeHost(h) == want {
				return p, true
			}
		}
	}
	return Process{}, false
}

func normalizeHost(h string) string {
	h = strings.TrimSpace(h)
	if h == "" {
		h = DefaultSocket
	}
	if p, ok := strings.CutPrefix(h, "unix://"); ok {
		if p == "" {
			p = "/var/run/docker.sock"
		}
		p = filepath.Clean(p)
		// /var/run is a symlink to /run on every current distribution.
		if strings.HasPrefix(p, "/run/") {
			p = "/var" + p
		}
		return "unix://" + p
	}
	return h
}
