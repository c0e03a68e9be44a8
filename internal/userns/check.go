package userns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/volperm/volperm/internal/diag"
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/plan"
	"github.com/volperm/volperm/internal/remap"
)

// Daemon is what the running dockerd says about itself (Engine API Info).
type Daemon struct {
	Version string
	Userns  bool   // SecurityOptions has name=userns
	RootDir string // DockerRootDir
}

func (d *Daemon) suffix() string {
	if d == nil || !d.Userns {
		return ""
	}
	return filepath.Base(d.RootDir)
}

// Assessment is what dockerd will do with a system's configuration at its
// next start.
type Assessment struct {
	Host    *Host
	Spec    string // the userns-remap in force at the next start; "" for none
	Source  string
	Account remap.Account
	// Mapping is the layout, when it can be laid out (Laid).
	Mapping idmap.Mapping
	Laid    bool
	RootDir string // the predicted Docker Root Dir
	// Starts is false when dockerd will refuse to start.
	Starts bool
	Setup  *diag.RemapSetup
	// Next is what the predicted root holds; Now what the root the daemon
	// uses now holds, when that is another directory.
	Next, Now Store
	// Running is the running daemon, when it is the one configured here.
	Running *Daemon
	Notes   []string
}

// Assess works out what dockerd will do at its next start. running is
// the daemon using this configuration, or nil.
func Assess(h *Host, running *Daemon) *Assessment {
	a := &Assessment{Host: h, Running: running}
	var errs []error
	if h.UnitErr != nil {
		a.Notes = append(a.Notes, "docker.service could not be read: "+h.UnitErr.Error())
	}
	if h.ConfigErr != nil {
		errs = append(errs, h.ConfigErr)
	}
	spec, from, conflict := h.Configured()
	if conflict != nil {
		errs = append(errs, conflict)
	}
	a.Spec, a.Source = spec, from
	if spec != "" {
		errs = append(errs, a.layout()...)
	}
	if a.Spec == "" && len(errs) > 0 {
		a.Spec, a.Source = "(unknown)", h.Config.Host
	}
	if a.Laid {
		a.RootDir = filepath.Join(h.DataRoot, a.Mapping.RootDirSuffix())
		if err := a.graphRoot(); err != nil {
			errs = append(errs, err)
		}
	} else if a.Spec == "" {
		a.RootDir = h.DataRoot
	}
	err := errors.Join(errs...)
	a.Starts = !diag.Refuses(err)
	a.Setup = &diag.RemapSetup{Spec: a.Spec, Source: a.Source, Err: err, Account: a.Account, Kernel: h.Kernel,
		SubUID: h.SubUID, SubGID: h.SubGID, Files: h.Sys.Files(), Users: h.Users, RootDir: a.RootDir}
	if a.Laid {
		a.Setup.Mapping = &a.Mapping
	}
	if running != nil {
		a.Setup.Running = &remap.Daemon{Version: running.Version, Userns: running.Userns, RootSuffix: running.suffix()}
	}
	if a.RootDir != "" {
		a.Next = CountStore(h.Sys.Path(a.RootDir))
	}
	if running != nil && running.RootDir != a.RootDir {
		a.Now = CountStore(h.Sys.Path(running.RootDir))
		a.Now.Dir = running.RootDir
	}
	a.Next.Dir = a.RootDir
	return a
}

// layout resolves the remap user and lays out its ranges as dockerd of
// h.Version will, returning every problem rather than the first.
func (a *Assessment) layout() []error {
	h := a.Host
	sp, err := remap.ParseSpec(a.Spec)
	if err != nil {
		if strings.HasPrefix(err.Error(), "Invalid user/group specification") {
			return []error{&remap.Refused{Msg: err.Error(), Fix: "give userns-remap as USER, USER:GROUP, UID, UID:GID or default"}}
		}
		return []error{err}
	}
	if h.IDErr != nil {
		return []error{h.IDErr}
	}
	acct, exists, err := sp.Resolve(h.Users, h.Groups)
	if errors.Is(err, remap.ErrRootRemap) {
		a.Notes = append(a.Notes, err.Error())
		a.Spec = ""
		return nil
	}
	var errs []error
	if err != nil {
		errs = append(errs, err)
		acct = remap.Account{User: sp.User, UID: uint32(identity.MaxID)}
		if u, ok := lookupUser(h.Users, sp.User); ok {
			acct = remap.Account{User: u.Name, UID: u.UID}
		}
	}
	a.Account = acct
	if !exists && err == nil {
		// "default" before dockerd has created dockremap: it will, with a
		// free 65536 range in each file.
		us, _ := idmap.FreeRange(h.SubUID, idmap.DefaultRangeSize)
		gs, _ := idmap.FreeRange(h.SubGID, idmap.DefaultRangeSize)
		a.Mapping = idmap.Mapping{UID: idmap.Map{{Host: us, Size: idmap.DefaultRangeSize}}, GID: idmap.Map{{Host: gs, Size: idmap.DefaultRangeSize}}}
		a.Laid = true
		a.Notes = append(a.Notes, fmt.Sprintf("user %s does not exist yet: dockerd will create it and give it %d:%d in /etc/subuid and %d:%d in /etc/subgid (predicted)",
			remap.DefaultUser, us, idmap.DefaultRangeSize, gs, idmap.DefaultRangeSize))
		return errs
	}
	var maps [2]idmap.Map
	for i, f := range []struct {
		file  file
		lines []identity.SubID
	}{{h.SubUIDFile, h.SubUID}, {h.SubGIDFile, h.SubGID}} {
		if !f.file.Exists {
			errs = append(errs, &remap.Refused{Msg: idmap.MappingsError(h.Version, fmt.Sprintf("open %s: no such file or directory", f.file.Host)),
				Fix: fmt.Sprintf("create %s with a line for %s (volperm userns plan --user %s shows it)", f.file.Host, acct.User, acct.User)})
			continue
		}
		m, err := idmap.DockerMap(f.lines, f.file.Path, acct.User, acct.UID, h.Version)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		maps[i] = m
	}
	if len(errs) == 0 {
		a.Mapping, a.Laid = idmap.Mapping{UID: maps[0], GID: maps[1]}, true
	}
	return errs
}

// graphRoot checks what dockerd checks after creating its remapped root:
// every existing directory above it must let the remapped root pair
// search it (daemon/daemon_unix.go setupDaemonRoot; the message observed
// on dockerd 20.10.24). dockerd itself makes the data root 0711 or 0710
// with the remapped gid, so the check starts at its parent.
func (a *Assessment) graphRoot() error {
	root := a.Mapping.RootPair()
	for dir := filepath.Dir(a.Host.DataRoot); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		st, err := os.Stat(a.Host.Sys.Path(dir))
		if err != nil {
			continue // dockerd creates missing directories 0711
		}
		mode := st.Mode().Perm()
		o := plan.OwnerOf(st)
		if mode&0o001 != 0 || uint32(o.UID) == root.UID && mode&0o100 != 0 || uint32(o.GID) == root.GID && mode&0o010 != 0 {
			continue
		}
		return &remap.Refused{
			Msg: fmt.Sprintf("a subdirectory in your graphroot path (%s) restricts access to the remapped root uid/gid; please fix by allowing 'o+x' permissions on existing directories", a.RootDir),
			Fix: fmt.Sprintf("chmod o+x %s (mode %04o, owner %d:%d: the remapped root %d:%d cannot search it)", a.Host.Sys.Path(dir), mode, o.UID, o.GID, root.UID, root.GID)}
	}
	return nil
}
