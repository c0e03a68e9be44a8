// Package userns checks, plans and applies dockerd's userns-remap: it
// reads everything that decides whether dockerd starts with a remap and
// what it then does (daemon.json, dockerd's command line, the remap user,
// /etc/subuid and /etc/subgid, the kernel, the data root), plans the edits
// that set a remap up (a free range, or the "host user is container root"
// layout), and applies them atomically with backups that revert restores
// byte for byte.
//
// It does not restart dockerd, talk to it, or print: the caller passes in
// what the running daemon says and renders the results.
package userns

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/volperm/volperm/internal/host"
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/plan"
	"github.com/volperm/volperm/internal/remap"
)

// System locates a host's files: this host (Root "/"), or a host image
// under Root, for tests and for preparing images offline. Paths given to
// it are host paths, as dockerd sees them.
type System struct {
	Root string
}

// Path is where a host path is on disk.
func (s System) Path(p string) string {
	if s.Root == "" || s.Root == "/" {
		return filepath.Clean(p)
	}
	return filepath.Join(s.Root, p)
}

// Live reports whether the system is this running host.
func (s System) Live() bool { return s.Root == "" || s.Root == "/" }

// Files are the identity files of the system, on disk.
func (s System) Files() remap.Files {
	return remap.Files{Passwd: s.Path("/etc/passwd"), Group: s.Path("/etc/group"),
		SubUID: s.Path("/etc/subuid"), SubGID: s.Path("/etc/subgid")}
}

// DefaultDataRoot is dockerd's --data-root default.
const DefaultDataRoot = "/var/lib/docker"

// file is one file as read: its bytes, and the mode and owner to keep
// when it is rewritten.
type file struct {
	Path   string // on disk
	Host   string // as on the host
	Data   []byte
	Exists bool
	Mode   fs.FileMode
	Owner  plan.Owner
	Link   bool // a symbolic link: read through, never replaced
}

func readFile(sys System, hostPath string) (file, error) {
	f := file{Path: sys.Path(hostPath), Host: hostPath, Mode: 0o644, Owner: plan.Owner{UID: -1, GID: -1}}
	if st, err := os.Lstat(f.Path); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		f.Link = true
	}
	st, err := os.Stat(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("reading %s: %w", f.Path, err)
	}
	if !st.Mode().IsRegular() {
		return f, fmt.Errorf("reading %s: not a regular file", f.Path)
	}
	if f.Data, err = os.ReadFile(f.Path); err != nil {
		return f, fmt.Errorf("reading %s: %w", f.Path, err)
	}
	f.Exists, f.Mode, f.Owner = true, st.Mode().Perm(), plan.OwnerOf(st)
	return f, nil
}

// Host is what a system says about its remap. Problems reading a part are
// kept with the part: check reports them, plan refuses to go on.
type Host struct {
	Sys     System
	Version idmap.Version // the dockerd whose behaviour is emulated

	// Flags is dockerd's command line at its next start: the running
	// dockerd's when systemd did not start it, else docker.service's.
	Flags     *host.Process
	FlagsFrom string
	Unit      *host.Unit
	UnitErr   error

	Config     file               // daemon.json
	ConfigSet  bool               // named by --config-file or by the caller
	Parsed     *host.DaemonConfig // nil when absent or unreadable
	ConfigErr  error              // why it cannot be read or used
	DataRoot   string
	Passwd     file
	Group      file
	Shadow     file
	GShadow    file
	Users      identity.Users
	Groups     identity.Groups
	SubUIDFile file
	SubGIDFile file
	SubUID     []identity.SubID
	SubGID     []identity.SubID
	IDErr      error // the first identity file that cannot be parsed
	Kernel     host.Kernel
}

// ReadOptions say where to look beyond the defaults.
type ReadOptions struct {
	// ConfigPath is the daemon.json to use (a host path); "" for dockerd's
	// --config-file, else /etc/docker/daemon.json.
	ConfigPath string
	// Running is the dockerd process serving the daemon being checked, on
	// a live system.
	Running *host.Process
	Version idmap.Version
}

// Read reads a system. Only an I/O failure that leaves nothing to report
// is an error.
func Read(sys System, o ReadOptions) (*Host, error) {
	h := &Host{Sys: sys, Version: o.Version}
	h.Unit, h.UnitErr = host.ReadDockerUnit(sys.Root)
	switch {
	case o.Running != nil && (h.Unit == nil || !o.Running.StartedBySystemd("/proc")):
		h.Flags, h.FlagsFrom = o.Running, fmt.Sprintf("the dockerd command line (pid %d)", o.Running.PID)
	case h.Unit != nil:
		p := h.Unit.Process()
		h.Flags, h.FlagsFrom = &p, "ExecStart of "+h.Unit.Path
	}

	cfgPath, set := o.ConfigPath, o.ConfigPath != ""
	if !set && h.Flags != nil {
		cfgPath, set = h.Flags.Flag("--config-file")
	}
	if cfgPath == "" {
		cfgPath = host.DefaultDaemonConfig
	}
	var err error
	if h.Config, err = readFile(sys, cfgPath); err != nil {
		return nil, err
	}
	h.ConfigSet = set
	h.readConfig(o.ConfigPath != "")

	h.DataRoot = DefaultDataRoot
	if h.Flags != nil {
		if d, ok := h.Flags.Flag("--data-root", "-g", "--graph"); ok {
			h.DataRoot = d
		}
	}
	if h.Parsed != nil && h.Parsed.DataRoot != "" {
		h.DataRoot = h.Parsed.DataRoot
	}

	for _, f := range []struct {
		dst  *file
		path string
	}{{&h.Passwd, "/etc/passwd"}, {&h.Group, "/etc/group"}, {&h.Shadow, "/etc/shadow"}, {&h.GShadow, "/etc/gshadow"},
		{&h.SubUIDFile, "/etc/subuid"}, {&h.SubGIDFile, "/etc/subgid"}} {
		if *f.dst, err = readFile(sys, f.path); err != nil {
			return nil, err
		}
	}
	h.parseIdentity()
	h.Kernel = host.ReadKernel(sys.Root)
	return h, nil
}

// readConfig reads daemon.json as dockerd of h.Version would. explicit is
// true when the caller named the file, which may then not exist yet.
func (h *Host) readConfig(explicit bool) {
	c := &h.Config
	if !c.Exists {
		if h.ConfigSet && !explicit {
			// dockerd --config-file with a missing file (observed on
			// dockerd 20.10.24).
			h.ConfigErr = &remap.Refused{Msg: fmt.Sprintf("unable to configure the Docker daemon with file %s: open %s: no such file or directory", c.Host, c.Host),
				Fix: fmt.Sprintf("create %s (an empty object {} will do) or drop --config-file from %s", c.Host, h.FlagsFrom)}
		}
		return
	}
	if msg := host.Refusal(c.Data, c.Host, h.Version); msg != "" {
		h.ConfigErr = &remap.Refused{Msg: msg, Fix: fmt.Sprintf("correct %s (%s)", c.Path, describeConfigErr(c.Data, c.Path)),
			Cause: configErr(c.Data, c.Path)}
		return
	}
	h.Parsed, h.ConfigErr = host.ParseDaemonConfig(c.Data, c.Path)
}

func configErr(data []byte, path string) error {
	_, err := host.ParseDaemonConfig(data, path)
	return err
}

func describeConfigErr(data []byte, path string) string {
	if err := configErr(data, path); err != nil {
		return err.Error()
	}
	return "dockerd reads it as empty: write {} at least"
}

func (h *Host) parseIdentity() {
	var err error
	if h.Passwd.Exists {
		h.Users, err = identity.ParsePasswd(bytes.NewReader(h.Passwd.Data), h.Passwd.Path)
	}
	if err == nil && h.Group.Exists {
		h.Groups, err = identity.ParseGroup(bytes.NewReader(h.Group.Data), h.Group.Path)
	}
	for _, sub := range []struct {
		f   file
		dst *[]identity.SubID
	}{{h.SubUIDFile, &h.SubUID}, {h.SubGIDFile, &h.SubGID}} {
		if err == nil && sub.f.Exists {
			*sub.dst, err = identity.ParseSubID(bytes.NewReader(sub.f.Data), sub.f.Path)
		}
	}
	h.IDErr = err
}

// Configured is the userns-remap dockerd will use at its next start, and
// where it is set; conflict is set when both the command line and
// daemon.json set it, which dockerd refuses.
func (h *Host) Configured() (spec, from string, conflict error) {
	flag, onCmd := "", false
	if h.Flags != nil {
		flag, onCmd = h.Flags.Flag("--userns-remap")
	}
	file := ""
	if h.Parsed != nil {
		file = h.Parsed.UsernsRemap
	}
	if onCmd && h.Parsed != nil && h.Parsed.Has("userns-remap") {
		return flag, h.FlagsFrom, &remap.Refused{
			Msg: fmt.Sprintf("unable to configure the Docker daemon with file %s: the following directives are specified both as a flag and in the configuration file: userns-remap: (from flag: %s, from file: %s)", h.Config.Host, flag, file),
			Fix: fmt.Sprintf("set userns-remap in one place: remove --userns-remap from %s, or the key from %s", h.FlagsFrom, h.Config.Path)}
	}
	if onCmd {
		return flag, h.FlagsFrom, nil
	}
	if file != "" {
		return file, h.Config.Host, nil
	}
	return "", "", nil
}
