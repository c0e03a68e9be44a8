package remap

import (
	"errors"
	"fmt"

	"github.com/volperm/volperm/internal/host"
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
)

// Files are the host files a remap is read from.
type Files struct {
	Passwd, Group, SubUID, SubGID string
}

// HostFiles are the real ones.
var HostFiles = Files{Passwd: "/etc/passwd", Group: "/etc/group", SubUID: "/etc/subuid", SubGID: "/etc/subgid"}

// Daemon is what a running daemon says about its remapping.
type Daemon struct {
	Version    string
	Userns     bool
	RootSuffix string // "100000.100000"
}

// Sources are everything that can say which remap is in force. Any may be
// missing.
type Sources struct {
	Flag      string             // an explicit spec given by the user
	Config    *host.DaemonConfig // daemon.json, nil when absent
	ConfigErr error              // why daemon.json could not be read
	Dockerd   *host.Process      // the dockerd serving the endpoint
	Daemon    *Daemon            // nil when no daemon answered
	Version   idmap.Version      // which daemon's behaviour to emulate
}

// Result is the remap in force and how it was found.
type Result struct {
	Remapped bool
	Spec     string
	Account  Account
	Mapping  idmap.Mapping
	Source   string   // which source decided
	Notes    []string // disagreements and assumptions, for the user
}

// Resolve decides the remap from the sources and lays it out.
func Resolve(f Files, s Sources) (Result, error) {
	var r Result
	spec, err := pickSpec(&r, f, s)
	if err != nil {
		return Result{}, err
	}
	if spec == "" {
		r.Mapping = idmap.HostIdentity()
		return r, nil
	}
	if err := r.layout(f, spec, s.Version); err != nil {
		return Result{}, err
	}
	if s.Daemon != nil && s.Daemon.Userns && r.Remapped {
		if got := r.Mapping.RootDirSuffix(); got != s.Daemon.RootSuffix {
			r.Notes = append(r.Notes, fmt.Sprintf(
				"the running daemon maps root to %s but %s and %s now give %s: they changed since the daemon started; a restart will switch to the new layout (and a new data root)",
				s.Daemon.RootSuffix, f.SubUID, f.SubGID, got))
		}
	}
	return r, nil
}

func pickSpec(r *Result, f Files, s Sources) (string, error) {
	if s.Flag != "" {
		r.Source = "--remap"
		return s.Flag, nil
	}
	configured, from, conflict := Configured(s)
	if conflict != "" {
		r.Notes = append(r.Notes, conflict)
	}
	if configured == "" && s.ConfigErr != nil {
		return "", s.ConfigErr
	}

	if s.Daemon == nil {
		if configured == "" {
			r.Source = "no daemon answered and none is configured"
			return "", nil
		}
		r.Source = from + " (no daemon answered to confirm it)"
		return configured, nil
	}
	if !s.Daemon.Userns {
		if configured != "" {
			r.Notes = append(r.Notes, fmt.Sprintf(
				"%s sets userns-remap=%s but the running daemon does not remap (no name=userns in its security options): it has not been restarted since; answering for the running daemon — pass --remap %s for the layout after a restart",
				from, configured, configured))
		}
		r.Source = "the running daemon, which does not remap"
		return "", nil
	}
	if configured != "" {
		r.Source = from + ", confirmed by the running daemon"
		return configured, nil
	}
	// Remapping is on but nothing readable names the user: find the owner of
	// the subuid range that starts at the daemon's root uid.
	owner, err := ownerOfRoot(f, s.Daemon.RootSuffix)
	if err != nil {
		return "", err
	}
	r.Source = fmt.Sprintf("the running daemon's root %s and the owner of that range in %s", s.Daemon.RootSuffix, f.SubUID)
	return owner, nil
}

// Configured is the userns-remap the daemon is configured with: the
// dockerd command line (the running daemon's), else daemon.json. conflict
// explains when both set it, which dockerd refuses.
func Configured(s Sources) (spec, from, conflict string) {
	var cfgSpec, cmdSpec string
	if s.Config != nil {
		cfgSpec = s.Config.UsernsRemap
	}
	if s.Dockerd != nil {
		cmdSpec, _ = s.Dockerd.Flag("--userns-remap")
	}
	spec, from = cmdSpec, fmt.Sprintf("the dockerd command line (pid %d)", pidOf(s.Dockerd))
	if cfgSpec != "" && cmdSpec != "" {
		conflict = fmt.Sprintf(
			"userns-remap is set both in %s and on the dockerd command line: dockerd refuses to start so (\"the following directives are specified both as a flag and in the configuration file: userns-remap\"); using the command line, the running daemon's",
			s.Config.Path)
	} else if cfgSpec != "" {
		spec, from = cfgSpec, s.Config.Path
	}
	return spec, from, conflict
}

func pidOf(p *host.Process) int {
	if p == nil {
		return 0
	}
	return p.PID
}

func ownerOfRoot(f Files, suffix string) (string, error) {
	var uid, gid uint32
	if _, err := fmt.Sscanf(suffix, "%d.%d", &uid, &gid); err != nil {
		return "", fmt.Errorf("the daemon remaps but its root dir suffix %q is not UID.GID", suffix)
	}
	lines, err := identity.ParseSubIDFile(f.SubUID)
	if err != nil {
		return "", err
	}
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l.Owner] {
			continue
		}
		seen[l.Owner] = true
		if l.Start == uid {
			return l.Owner, nil
		}
	}
	return "", fmt.Errorf("the daemon remaps root to %s but no daemon.json or dockerd command line names the remap user and no %s line starts at %d; pass --remap USER", suffix, f.SubUID, uid)
}

func (r *Result) layout(f Files, spec string, v idmap.Version) error {
	sp, err := ParseSpec(spec)
	if err != nil {
		return err
	}
	r.Spec = spec
	users, err := identity.ParsePasswdFile(f.Passwd)
	if err != nil {
		return err
	}
	groups, err := identity.ParseGroupFile(f.Group)
	if err != nil {
		return err
	}
	acct, exists, err := sp.Resolve(users, groups)
	if errors.Is(err, ErrRootRemap) {
		r.Notes = append(r.Notes, err.Error())
		r.Mapping = idmap.HostIdentity()
		return nil
	}
	if err != nil {
		return err
	}
	subuid, err := identity.ParseSubIDFile(f.SubUID)
	if err != nil {
		return err
	}
	subgid, err := identity.ParseSubIDFile(f.SubGID)
	if err != nil {
		return err
	}
	r.Remapped, r.Account = true, acct
	if !exists {
		// "default" before dockerd has created dockremap: it will allocate
		// a free 65536 range in each file.
		us, _ := idmap.FreeRange(subuid, idmap.DefaultRangeSize)
		gs, _ := idmap.FreeRange(subgid, idmap.DefaultRangeSize)
		r.Mapping = idmap.Mapping{
			UID: idmap.Map{{Container: 0, Host: us, Size: idmap.DefaultRangeSize}},
			GID: idmap.Map{{Container: 0, Host: gs, Size: idmap.DefaultRangeSize}},
		}
		r.Notes = append(r.Notes, fmt.Sprintf("user %s does not exist yet: dockerd will create it and add %s:%d:%d to %s and %s:%d:%d to %s (predicted)",
			DefaultUser, DefaultUser, us, idmap.DefaultRangeSize, f.SubUID, DefaultUser, gs, idmap.DefaultRangeSize, f.SubGID))
		return nil
	}
	r.Mapping, err = Layout(acct, subuid, subgid, f.SubUID, f.SubGID, v)
	return err
}
