package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/volperm/volperm/internal/diag"
	"github.com/volperm/volperm/internal/engine"
	"github.com/volperm/volperm/internal/host"
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/plan"
	"github.com/volperm/volperm/internal/userns"
)

// usernsOptions are the inputs every userns verb shares.
type usernsOptions struct {
	root          string
	daemonConfig  string
	daemonVersion string
	format        string
}

// usernsPlanOptions are plan's and apply's.
type usernsPlanOptions struct {
	usernsOptions
	user, hostUser, hostGroup, size string
	createUser                      bool
	restart                         bool
}

func newUsernsCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "userns",
		Short: "Check, plan and apply the daemon's user-namespace remapping (userns-remap)",
		Long: `Check, plan and apply dockerd's userns-remap without its opaque failures.

check says whether dockerd will start with its configuration and what it will then do: the
remap user, /etc/subuid and /etc/subgid, daemon.json and dockerd's command line, the kernel,
the mapping table and the Docker Root Dir; against a running daemon, whether it runs the
configured remap. plan prints the exact edits of /etc/subuid, /etc/subgid and daemon.json
for a remap; apply makes them (atomically, with backups) and revert undoes the last apply.

--root DIR makes every path relative to DIR: a host image prepared offline, or a test.`,
	}
	cmd.AddCommand(newUsernsCheckCmd(env), newUsernsPlanCmd(env, false), newUsernsPlanCmd(env, true), newUsernsRevertCmd(env))
	return cmd
}

func addUsernsFlags(f *pflag.FlagSet, o *usernsOptions, formats string) {
	f.StringVar(&o.root, "root", "", "work on the files under this directory instead of this host's (no daemon is asked)")
	f.StringVar(&o.daemonConfig, "daemon-config", "", "daemon.json (default: dockerd's --config-file, else "+host.DefaultDaemonConfig+"); under --root, relative to it")
	f.StringVar(&o.daemonVersion, "daemon-version", "", "emulate this dockerd version (default: the running daemon's, else the installed dockerd's)")
	f.StringVarP(&o.format, "format", "o", "text", "output format: "+formats)
}

// usernsInput is a system read for a userns verb.
type usernsInput struct {
	sys     userns.System
	host    *userns.Host
	running *userns.Daemon
	notes   []string
}

// readUserns reads the system: this host and the daemon serving
// DOCKER_HOST, or the files under --root.
func readUserns(ctx context.Context, o usernsOptions) (*usernsInput, error) {
	sys, err := usernsSystem(o.root)
	if err != nil {
		return nil, err
	}
	var facts *engine.Facts
	var proc *host.Process
	var notes []string
	if sys.Live() {
		ep, err := engine.ResolveEndpoint("")
		if err == nil {
			if c, err := engine.Connect(ep); err == nil {
				if f, err := engine.ReadFacts(ctx, c); err == nil {
					facts = &f
				}
				c.Close()
			}
			if p, ok := host.ServingDockerd(host.DockerdProcesses("/proc"), ep.Host); ok {
				proc = &p
			}
		}
		if facts == nil {
			notes = append(notes, "no daemon answered: the running daemon is not compared with its configuration")
		}
	}
	v, vnote := daemonVersion(o.daemonVersion, facts)
	if vnote != "" {
		notes = append(notes, vnote)
	}
	in, err := usernsHost(sys, o.daemonConfig, v, facts, proc)
	if err != nil {
		return nil, err
	}
	in.notes = append(notes, in.notes...)
	return in, nil
}

// usernsSystem is this host, or the files under --root.
func usernsSystem(root string) (userns.System, error) {
	if root == "" {
		return userns.System{Root: "/"}, nil
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return userns.System{}, usagef("--root %s: %v", root, err)
	}
	return userns.System{Root: abs}, nil
}

// usernsHost reads a system's remap setup. facts and proc are the
// running daemon and its process, when one answers.
func usernsHost(sys userns.System, daemonConfig string, v idmap.Version, facts *engine.Facts, proc *host.Process) (*usernsInput, error) {
	in := &usernsInput{sys: sys}
	h, err := userns.Read(sys, userns.ReadOptions{ConfigPath: daemonConfig, Running: proc, Version: v})
	if err != nil {
		return nil, incompleteError{err}
	}
	in.host = h
	// The running daemon is compared with the configuration only when it
	// is the configuration that daemon uses.
	if facts != nil {
		own := host.DefaultDaemonConfig
		if proc != nil {
			if c, ok := proc.Flag("--config-file"); ok {
				own = c
			}
		}
		if daemonConfig == "" || filepath.Clean(daemonConfig) == filepath.Clean(own) {
			in.running = &userns.Daemon{Version: facts.Version, Userns: facts.Userns, RootDir: facts.RootDir}
		} else {
			in.notes = append(in.notes, fmt.Sprintf("--daemon-config %s is not the running daemon's configuration (%s): the running daemon is not compared with it", daemonConfig, own))
		}
	}
	return in, nil
}

func newUsernsCheckCmd(env Env) *cobra.Command {
	var o usernsOptions
	var failOn string
	cmd := &cobra.Command{
		Use:   "check [flags]",
		Short: "Say whether dockerd will start with its userns-remap configuration, and what it will do",
		Long: `Check everything that decides whether dockerd starts with its userns-remap and what it
then does: daemon.json (JSON errors with line:column; userns-remap also on the dockerd command
line of docker.service, which dockerd refuses), the remap user and group, their /etc/subuid
and /etc/subgid lines (well-formed, at least 65536 ids, no overlap with other users' ranges or
with real accounts unless it is the deliberate host-user layout), the kernel (CONFIG_USER_NS,
user.max_user_namespaces), the directories above the data root, and the Docker Root Dir it
will use (<data-root>/<uid>.<gid>) with what is there yet. Problems carry doctor's rule IDs
(VP302-VP306); a refusal quotes the line dockerd prints. Against a running daemon it verifies
the remap in force (Engine API Info: name=userns, the DockerRootDir suffix).

Exit codes: 0 dockerd will start and can run remapped containers (or, with --fail-on, nothing
at or above that severity), 1 it will not (or findings at or above --fail-on), 2 usage error,
3 could not complete.`,
		Example: `  volperm userns check
  volperm userns check --daemon-config /etc/docker/daemon.json --format json
  volperm userns check --root /srv/image --fail-on warning`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUsernsCheck(cmd.Context(), env, o, failOn)
		},
	}
	addUsernsFlags(cmd.Flags(), &o, "text, json or sarif")
	cmd.Flags().StringVar(&failOn, "fail-on", "start", "exit 1 when dockerd will not start or cannot run remapped containers (start), or on findings at or above info, warning or error")
	return cmd
}

// checkReport is userns check's JSON output.
type checkReport struct {
	Spec          string         `json:"spec"`
	Source        string         `json:"source,omitempty"`
	DaemonVersion string         `json:"daemon_version"`
	User          string         `json:"user,omitempty"`
	UID           *uint32        `json:"uid,omitempty"`
	Group         string         `json:"group,omitempty"`
	GID           *uint32        `json:"gid,omitempty"`
	Starts        bool           `json:"starts"`
	Kernel        host.Kernel    `json:"kernel"`
	UIDMap        idmap.Map      `json:"uid_map,omitempty"`
	GIDMap        idmap.Map      `json:"gid_map,omitempty"`
	DataRoot      string         `json:"data_root"`
	RootDir       string         `json:"root_dir,omitempty"`
	Next          userns.Store   `json:"next"`
	Now           *userns.Store  `json:"now,omitempty"`
	Running       *runningReport `json:"running,omitempty"`
	Findings      []diag.Finding `json:"findings"`
	Notes         []string       `json:"notes,omitempty"`
}

type runningReport struct {
	Version string `json:"version"`
	Userns  bool   `json:"userns"`
	RootDir string `json:"root_dir"`
	Matches bool   `json:"matches"`
}

func runUsernsCheck(ctx context.Context, env Env, o usernsOptions, failOn string) error {
	if !slices.Contains([]string{"text", "json", "sarif"}, o.format) {
		return usagef("--format %q: want text, json or sarif", o.format)
	}
	threshold := diag.Severity(-1)
	if failOn != "start" {
		s, err := diag.ParseSeverity(failOn)
		if err != nil {
			return usagef("--fail-on %q: want start, info, warning or error", failOn)
		}
		threshold = s
	}
	in, err := readUserns(ctx, o)
	if err != nil {
		return err
	}
	a := userns.Assess(in.host, in.running)
	findings := diag.Run(&diag.Input{Host: diag.Host{Remap: a.Setup}, Stat: statNode})
	r := checkReport{Spec: a.Spec, Source: a.Source, DaemonVersion: in.host.Version.String(), Starts: a.Starts,
		Kernel: in.host.Kernel, DataRoot: in.host.DataRoot, RootDir: a.RootDir, Next: a.Next, Findings: nonNil(findings),
		Notes: append(in.notes, a.Notes...)}
	if a.Account.User != "" {
		r.User, r.Group = a.Account.User, a.Account.Group
		if a.Account.UID != uint32(identity.MaxID) {
			r.UID, r.GID = &a.Account.UID, &a.Account.GID
		}
	}
	if a.Laid {
		r.UIDMap, r.GIDMap = a.Mapping.UID, a.Mapping.GID
	}
	if a.Now.Dir != "" {
		r.Now = &a.Now
	}
	if in.running != nil {
		r.Running = &runningReport{Version: in.running.Version, Userns: in.running.Userns, RootDir: in.running.RootDir,
			Matches: in.running.RootDir == a.RootDir && in.running.Userns == (a.Spec != "" && a.Laid)}
	}
	switch o.format {
	case "json":
		err = writeJSON(env.Stdout, r)
	case "sarif":
		err = writeJSON(env.Stdout, sarif(findings))
	default:
		err = writeCheckText(env.Stdout, r, a, findings)
		for _, n := range r.Notes {
			fmt.Fprintf(env.Stderr, "volperm: note: %s\n", n)
		}
	}
	if err != nil {
		return incompleteError{err}
	}
	fail := !a.Starts
	for _, f := range findings {
		if threshold >= 0 && f.Severity >= threshold || threshold < 0 && f.ID == "VP303" && f.Severity == diag.Error {
			fail = true
		}
	}
	if fail {
		return codeError{ExitFindings}
	}
	return nil
}

func writeCheckText(w io.Writer, r checkReport, a *userns.Assessment, findings []diag.Finding) error {
	var b strings.Builder
	switch {
	case r.Spec == "":
		fmt.Fprintf(&b, "userns-remap: not configured (dockerd %s): container ids are host ids\n", r.DaemonVersion)
	default:
		fmt.Fprintf(&b, "userns-remap: %s, from %s (dockerd %s)\n", r.Spec, r.Source, r.DaemonVersion)
	}
	if r.UID != nil {
		fmt.Fprintf(&b, "remap user: %s (uid %d), group %s (gid %d)\n", r.User, *r.UID, r.Group, *r.GID)
	}
	if r.Starts {
		fmt.Fprintf(&b, "dockerd will start with this configuration\n")
	} else {
		fmt.Fprintf(&b, "dockerd will NOT start with this configuration (VP302 below says why)\n")
	}
	k := r.Kernel
	if k.UserNS == "" && k.MaxUserNamespaces < 0 {
		fmt.Fprintf(&b, "kernel: not known (no kernel configuration and no /proc under the root)")
	} else {
		userNS := "unknown (no kernel configuration found)"
		if k.UserNS != "" {
			userNS = k.UserNS + " (" + k.ConfigFile + ")"
		}
		fmt.Fprintf(&b, "kernel: CONFIG_USER_NS=%s, user.max_user_namespaces=%s", userNS, knob(k.MaxUserNamespaces))
	}
	if k.UnprivilegedClone >= 0 {
		fmt.Fprintf(&b, ", kernel.unprivileged_userns_clone=%d (matters only to rootless Docker: dockerd runs as root)", k.UnprivilegedClone)
	}
	b.WriteString("\n")
	if a.Laid {
		var t strings.Builder
		_ = printTable(&t, "text", mapping{Mapping: a.Mapping, remapped: true})
		b.WriteString(t.String())
	}
	if r.RootDir != "" {
		fmt.Fprintf(&b, "docker root dir: %s (%s)\n", r.RootDir, describeStore(r.Next))
	}
	if r.Now != nil && r.Now.Exists {
		fmt.Fprintf(&b, "the running daemon's root %s holds %s: not visible after a restart with this configuration\n", r.Now.Dir, countText(*r.Now))
	}
	if r.Running != nil {
		switch {
		case r.Running.Matches && r.Running.Userns:
			fmt.Fprintf(&b, "running daemon: remaps as configured (name=userns, Docker Root Dir %s)\n", r.Running.RootDir)
		case r.Running.Matches:
			fmt.Fprintf(&b, "running daemon: does not remap, as configured\n")
		default:
			fmt.Fprintf(&b, "running daemon: differs from the configuration (VP306 below)\n")
		}
	}
	b.WriteString("\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	return writeText(w, &doctorRun{}, findings)
}

func knob(n int) string {
	if n < 0 {
		return "unknown"
	}
	return strconv.Itoa(n)
}

func describeStore(s userns.Store) string {
	if !s.Exists {
		return "does not exist yet: dockerd starts it empty"
	}
	return "holds " + countText(s)
}

func countText(s userns.Store) string {
	t := fmt.Sprintf("%d image(s), %d container(s)", s.Images, s.Containers)
	if len(s.Volumes) > 0 {
		t += fmt.Sprintf(", %d volume(s)", len(s.Volumes))
	}
	return t
}

func newUsernsPlanCmd(env Env, apply bool) *cobra.Command {
	var o usernsPlanOptions
	cmd := &cobra.Command{
		Use:   "plan --user NAME [--host-user USER [--host-group GROUP]] [--size N] [flags]",
		Short: "Print the exact /etc/subuid, /etc/subgid and daemon.json edits for a userns-remap",
		Long: `Plan a userns-remap and print the exact edits, the resulting mapping table, and what the
change does to existing images, containers and volumes.

Without --host-user: the remap user gets a free range of --size ids (65536) in /etc/subuid and
/etc/subgid, overlapping no other owner's range and no real account; lines it already has are
kept when they give that. With --host-user: container root is that host user (and --host-group,
default its primary group: seed 004's docker group), first line NAME:<host id>:1, then a range
for container ids 1 and up (the user's existing range when it is clean, else a free one).
Lines are keyed by name, so that dockerd of every version builds the same map.
daemon.json gets "userns-remap": "NAME" (or "NAME:GROUP"), every other key kept as written.
--create-user creates a missing remap user as dockerd creates dockremap (a system account with
/bin/false as its shell; useradd on this host, the passwd and group files under --root).`,
		Example: `  volperm userns plan --user dockremap --create-user
  volperm userns plan --user mino --host-user mino --host-group docker
  volperm userns plan --user vp --size 131072 --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUsernsPlan(cmd.Context(), env, o, apply)
		},
	}
	if apply {
		cmd.Use = "apply --user NAME [--host-user USER [--host-group GROUP]] [--size N] [--restart] [flags]"
		cmd.Short = "Make the userns plan's edits atomically, with backups (volperm userns revert undoes them)"
		cmd.Long = `Make the edits userns plan prints. Every file is replaced atomically (temporary file in
the same directory, fsync, rename) keeping its mode and owner, after a timestamped backup of it
(FILE.volperm-YYYYMMDDTHHMMSSZ) and a record of the apply under /var/lib/volperm/userns;
daemon.json is written last. volperm userns revert restores the backups.

dockerd is not restarted unless --restart is given (systemctl restart docker, when systemd
runs it); the commands to restart it are printed.`
		cmd.Example = `  volperm userns apply --user dockremap --create-user
  volperm userns apply --user mino --host-user mino --host-group docker --restart
  volperm userns apply --root /srv/image --user vp --create-user`
	}
	f := cmd.Flags()
	addUsernsFlags(f, &o.usernsOptions, "text or json")
	f.StringVar(&o.user, "user", "", "the remap user (a name, a uid, or default for dockremap)")
	f.StringVar(&o.hostUser, "host-user", "", "make container root this host user (name or uid)")
	f.StringVar(&o.hostGroup, "host-group", "", "with --host-user: make container root's group this host group (default: the user's primary group)")
	f.StringVar(&o.size, "size", strconv.Itoa(userns.DefaultSize), "ids per file: container ids 0..N-1")
	f.BoolVar(&o.createUser, "create-user", false, "create the remap user when missing, as dockerd creates dockremap")
	if apply {
		f.BoolVar(&o.restart, "restart", false, "restart dockerd afterwards (systemctl restart docker)")
	}
	return cmd
}

// planReport is plan's and apply's JSON output.
type planReport struct {
	Spec     string           `json:"spec"`
	User     string           `json:"user"`
	UID      *uint32          `json:"uid,omitempty"`
	HostRoot *idmap.Pair      `json:"host_root,omitempty"`
	Changes  []changeReport   `json:"changes"`
	UserAdd  []string         `json:"useradd,omitempty"`
	UIDMap   idmap.Map        `json:"uid_map"`
	GIDMap   idmap.Map        `json:"gid_map"`
	RootDir  string           `json:"root_dir"`
	Effects  userns.Effects   `json:"effects"`
	Notes    []string         `json:"notes,omitempty"`
	Applied  *userns.Manifest `json:"applied,omitempty"`
}

type changeReport struct {
	Path    string `json:"path"`
	Existed bool   `json:"existed"`
	Why     string `json:"why"`
	Diff    string `json:"diff"`
	Backup  string `json:"backup,omitempty"`
}

func parseSize(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, usagef("--size %q: not a number of ids", s)
	}
	switch {
	case n == 0:
		return 0, usagef("--size 0: a remap needs at least one id (dockerd gives 65536)")
	case n > uint64(identity.MaxID)+1-idmap.DefaultRangeStart:
		return 0, usagef("--size %d: beyond the id space (at most %d ids fit above %d)", n, uint64(identity.MaxID)+1-idmap.DefaultRangeStart, idmap.DefaultRangeStart)
	}
	return uint32(n), nil
}

func runUsernsPlan(ctx context.Context, env Env, o usernsPlanOptions, apply bool) error {
	if o.format != "text" && o.format != "json" {
		return usagef("--format %q: want text or json", o.format)
	}
	if o.user == "" {
		return usagef("--user is required: the remap user (a name, a uid, or default)")
	}
	if o.hostGroup != "" && o.hostUser == "" {
		return usagef("--host-group needs --host-user")
	}
	if o.restart && o.root != "" {
		return usagef("--restart restarts this host's dockerd: it does not go with --root")
	}
	size, err := parseSize(o.size)
	if err != nil {
		return err
	}
	in, err := readUserns(ctx, o.usernsOptions)
	if err != nil {
		return err
	}
	if err := userns.Unfinished(in.sys); err != nil {
		if apply {
			return err
		}
		in.notes = append(in.notes, err.Error())
	}
	p, err := userns.Make(in.host, userns.Request{User: o.user, HostUser: o.hostUser, HostGroup: o.hostGroup, Size: size, CreateUser: o.createUser})
	if err != nil {
		return err
	}
	// Where the daemon's data is now, and under which mapping.
	before := userns.Assess(in.host, in.running)
	now, nowMap := before.RootDir, idmap.HostIdentity()
	if before.Spec != "" && before.Laid {
		nowMap = before.Mapping
	}
	if in.running != nil {
		now = in.running.RootDir
	}
	if now == "" {
		now = in.host.DataRoot
	}
	r := planReport{Spec: p.Spec, User: p.User, UID: p.UID, HostRoot: p.HostRoot, UserAdd: p.UserAdd, UIDMap: p.Mapping.UID, GIDMap: p.Mapping.GID,
		RootDir: p.RootDir, Effects: p.Effects(in.sys, now, nowMap), Notes: append(in.notes, p.Notes...), Changes: []changeReport{}}
	for _, c := range p.Changes {
		r.Changes = append(r.Changes, changeReport{Path: c.Path, Existed: c.Existed, Why: c.Why, Diff: userns.Diff(c.Path, c.Existed, c.Old, c.New)})
	}
	if apply {
		m, err := userns.Apply(in.sys, p, userns.DefaultOps())
		if err != nil {
			return err
		}
		r.Applied = m
		for i := range r.Changes {
			if m != nil && m.Files[i].Backup != "" {
				r.Changes[i].Backup = in.sys.Path(m.Files[i].Backup)
			}
		}
	}
	if o.format == "json" {
		if err := writeJSON(env.Stdout, r); err != nil {
			return err
		}
	} else if err := writePlanText(env.Stdout, in, o, p, r, apply); err != nil {
		return incompleteError{err}
	}
	if apply && o.restart && r.Applied != nil {
		return restartDockerd(ctx, env, in)
	}
	return nil
}

func writePlanText(w io.Writer, in *usernsInput, o usernsPlanOptions, p *userns.Plan, r planReport, applied bool) error {
	var b strings.Builder
	uid := "uid chosen by useradd"
	if p.UID != nil {
		uid = fmt.Sprintf("uid %d", *p.UID)
	}
	fmt.Fprintf(&b, "userns-remap %q: remap user %s (%s)\n", p.Spec, p.User, uid)
	n := min(p.Mapping.UID.Size(), p.Mapping.GID.Size())
	if p.HostRoot != nil {
		fmt.Fprintf(&b, "layout: container root is host %d:%d; container ids 1-%d are mapped to the ranges below\n", p.HostRoot.UID, p.HostRoot.GID, n-1)
	} else {
		fmt.Fprintf(&b, "layout: container ids 0-%d in a range of their own\n", n-1)
	}
	if len(p.Changes) == 0 && p.UserAdd == nil {
		fmt.Fprintf(&b, "\nnothing to change: the files already set this remap up\n")
	}
	if p.UserAdd != nil {
		fmt.Fprintf(&b, "\n# create the remap user, as dockerd creates dockremap\n%s\n", strings.Join(p.UserAdd, " "))
	}
	for _, c := range r.Changes {
		fmt.Fprintf(&b, "\n# %s\n", c.Why)
		if c.Backup != "" {
			fmt.Fprintf(&b, "# backup: %s\n", c.Backup)
		}
		b.WriteString(c.Diff)
	}
	b.WriteString("\n")
	var t strings.Builder
	_ = printTable(&t, "text", mapping{Mapping: p.Mapping, remapped: true, rootDir: p.RootDir})
	b.WriteString(t.String())

	e := r.Effects
	fmt.Fprintf(&b, "\nwhat changes for existing data:\n")
	bullet := func(text string, cmd ...string) {
		b.WriteString("  - " + strings.TrimPrefix(indent(wrap(text, 90), "    "), "    "))
		for _, c := range cmd {
			b.WriteString("      " + c + "\n")
		}
	}
	switch {
	case e.From.Dir == e.To.Dir:
		bullet(fmt.Sprintf("dockerd keeps its root %s (%s).", e.To.Dir, describeStore(e.To)))
	case e.From.Exists:
		bullet(fmt.Sprintf("images and containers: %s holds %s. With the remap dockerd uses %s (%s); the old ones stay where they are, not visible while the remap is on, and come back when it is reverted.",
			e.From.Dir, countText(e.From), e.To.Dir, describeStore(e.To)))
	default:
		bullet(fmt.Sprintf("images and containers: dockerd will use %s (%s).", e.To.Dir, describeStore(e.To)))
	}
	if e.From.Dir != e.To.Dir {
		for _, v := range e.From.Volumes {
			src := filepath.Join(e.From.Dir, "volumes", v, "_data")
			dst := filepath.Join(e.To.Dir, "volumes", v, "_data")
			bullet(fmt.Sprintf("volume %s stays in %s; to use its data under the remap, after the restart:", v, src),
				fmt.Sprintf("docker volume create %s && cp -a %s/. %s/ && volperm shift %s %s", v, src, dst, dst, e.Shift))
		}
	}
	bullet("bind-mounted host directories keep their owners: what containers wrote so far belongs to the old host ids. Re-own such a directory for the new mapping with:",
		"volperm shift DIR "+e.Shift)
	if !applied {
		fmt.Fprintf(&b, "\nto make these changes: volperm userns apply %s\n", strings.Join(planArgs(o), " "))
	} else if r.Applied == nil {
		fmt.Fprintf(&b, "\nnothing written\n")
	} else {
		fmt.Fprintf(&b, "\napplied; recorded as %s (volperm userns revert undoes it)\n", r.Applied.Stamp)
		if !o.restart {
			b.WriteString(restartText(in))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// planArgs repeats the flags that shape the plan, for "to apply" hints.
func planArgs(o usernsPlanOptions) []string {
	var a []string
	add := func(flag, v string) {
		if v != "" {
			a = append(a, flag, plan.Quote(v))
		}
	}
	add("--root", o.root)
	add("--daemon-config", o.daemonConfig)
	add("--user", o.user)
	add("--host-user", o.hostUser)
	add("--host-group", o.hostGroup)
	if o.size != strconv.Itoa(userns.DefaultSize) {
		add("--size", o.size)
	}
	if o.createUser {
		a = append(a, "--create-user")
	}
	return a
}

// restartText says how to restart dockerd so that the remap takes effect.
func restartText(in *usernsInput) string {
	var b strings.Builder
	b.WriteString("\nthe remap takes effect when dockerd restarts:\n")
	b.WriteString("  systemd:        systemctl restart docker\n")
	pidfile := "/var/run/docker.pid"
	start := "dockerd"
	if f := in.host.Flags; f != nil && in.host.FlagsFrom != "" && !strings.HasPrefix(in.host.FlagsFrom, "ExecStart") {
		if p, ok := f.Flag("--pidfile", "-p"); ok {
			pidfile = p
		}
		start = strings.Join(f.Args, " ")
	}
	fmt.Fprintf(&b, "  plain dockerd:  kill -TERM $(cat %s), wait for it to exit, then start it again: %s\n", pidfile, start)
	b.WriteString("then verify the running daemon: volperm userns check\n")
	return b.String()
}

// restartDockerd restarts dockerd through systemd and checks the result.
func restartDockerd(ctx context.Context, env Env, in *usernsInput) error {
	systemctl, err := exec.LookPath("systemctl")
	if err != nil || !host.SystemdRunning("/") {
		fmt.Fprint(env.Stderr, restartText(in))
		return incompleteError{errors.New("--restart: systemd does not run this host's dockerd; restart it as shown above")}
	}
	fmt.Fprintf(env.Stdout, "restarting dockerd: systemctl restart docker\n")
	if out, err := exec.CommandContext(ctx, systemctl, "restart", "docker").CombinedOutput(); err != nil {
		return incompleteError{fmt.Errorf("systemctl restart docker: %w: %s (journalctl -u docker says more; volperm userns check says why)", err, strings.TrimSpace(string(out)))}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		re, err := readUserns(ctx, usernsOptions{})
		if err == nil && re.running != nil {
			a := userns.Assess(re.host, re.running)
			if re.running.Userns && re.running.RootDir == a.RootDir {
				fmt.Fprintf(env.Stdout, "dockerd remaps as planned: Docker Root Dir %s\n", re.running.RootDir)
				return nil
			}
			return incompleteError{fmt.Errorf("dockerd restarted but its root is %s, not %s: see volperm userns check", re.running.RootDir, a.RootDir)}
		}
		if time.Now().After(deadline) {
			return incompleteError{errors.New("dockerd did not answer within 30s of the restart: see systemctl status docker and volperm userns check")}
		}
		time.Sleep(time.Second)
	}
}

func newUsernsRevertCmd(env Env) *cobra.Command {
	var root string
	var force bool
	cmd := &cobra.Command{
		Use:   "revert [--root DIR] [--force]",
		Short: "Restore the files of the last userns apply from its backups",
		Long: `Restore every file the last volperm userns apply wrote, byte for byte, from its backup
(atomically, with its old mode and owner); a file the apply created is removed, and a user it
created with useradd is deleted. A file changed since the apply stops the revert before anything
is written, unless --force. Run it again to revert the apply before that. dockerd is not
restarted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sys, err := usernsSystem(root)
			if err != nil {
				return err
			}
			m, err := userns.Revert(sys, force, userns.DefaultOps())
			if err != nil {
				return err
			}
			for _, f := range m.Files {
				if f.Existed {
					fmt.Fprintf(env.Stdout, "restored %s\n", sys.Path(f.Path))
				} else {
					fmt.Fprintf(env.Stdout, "removed %s (the apply created it)\n", sys.Path(f.Path))
				}
			}
			if m.CreatedUser != "" && sys.Live() {
				fmt.Fprintf(env.Stdout, "deleted user %s (the apply created it)\n", m.CreatedUser)
			}
			fmt.Fprintf(env.Stdout, "reverted the apply of %s; restart dockerd for it to take effect (systemctl restart docker)\n", m.Stamp)
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "root", "", "work on the files under this directory instead of this host's")
	cmd.Flags().BoolVar(&force, "force", false, "restore the backups even over files changed since the apply")
	return cmd
}
