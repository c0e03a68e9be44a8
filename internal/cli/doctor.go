package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/volperm/volperm/internal/access"
	"github.com/volperm/volperm/internal/compose"
	"github.com/volperm/volperm/internal/diag"
	"github.com/volperm/volperm/internal/engine"
	"github.com/volperm/volperm/internal/host"
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/remap"
	"github.com/volperm/volperm/internal/userns"
	"github.com/volperm/volperm/internal/workload"
)

type doctorOptions struct {
	files         []string
	projectDir    string
	containers    []string
	allContainers bool
	hostOnly      bool
	daemonConfig  string
	format        string
	failOn        string
}

func newDoctorCmd(env Env) *cobra.Command {
	var o doctorOptions
	cmd := &cobra.Command{
		Use:   "doctor [flags]",
		Short: "Find container/host permission problems in a compose project, containers and the Docker host",
		Long: `Find every container/host permission problem before docker compose up does.

Reads a compose project (the files docker compose would use in the current directory, or -f),
containers (--container, --all-containers) through the Engine API, and the Docker host. For each
workload it resolves the effective user as the daemon will (compose user:, else the image's USER,
in the image's own /etc/passwd and /etc/group), the userns remap in force, and each bind mount,
and reports what will fail, why in uid terms, and the least-privilege fix.

Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it, 2 usage error,
3 could not complete (unreadable or invalid compose file, unreachable daemon for --container).`,
		Example: `  volperm doctor
  volperm doctor -f compose.yaml -f compose.prod.yaml --format json
  volperm doctor --container web --fail-on warning
  volperm doctor --all-containers --format sarif > volperm.sarif`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDoctor(cmd.Context(), env, o)
		},
	}
	f := cmd.Flags()
	addInputFlags(f, &o)
	f.StringVarP(&o.format, "format", "o", "text", "output format: text, json or sarif")
	f.StringVar(&o.failOn, "fail-on", "error", "exit 1 when a finding is at or above: info, warning or error")
	return cmd
}

// addInputFlags adds the inputs doctor and fix share.
func addInputFlags(f *pflag.FlagSet, o *doctorOptions) {
	f.StringArrayVarP(&o.files, "file", "f", nil, "compose file (repeatable, merged like docker compose)")
	f.StringVar(&o.projectDir, "project-dir", "", "compose project directory")
	f.StringArrayVar(&o.containers, "container", nil, "created or running container to check (repeatable)")
	f.BoolVar(&o.allContainers, "all-containers", false, "check every container")
	f.BoolVar(&o.hostOnly, "host", false, "check only the Docker host (socket, remap setup)")
	f.StringVar(&o.daemonConfig, "daemon-config", "", "daemon.json to check (default: the running dockerd's --config-file, else "+host.DefaultDaemonConfig+")")
}

// doctorRun is everything gathered for the rules and the report.
type doctorRun struct {
	workloads []workload.Workload
	host      diag.Host
	notes     []string
	files     []string
}

func runDoctor(ctx context.Context, env Env, o doctorOptions) error {
	if !slices.Contains([]string{"text", "json", "sarif"}, o.format) {
		return usagef("--format %q: want text, json or sarif", o.format)
	}
	threshold, err := diag.ParseSeverity(o.failOn)
	if err != nil {
		return usagef("--fail-on: %v", err)
	}
	run, err := gather(ctx, o)
	if err != nil {
		return err
	}
	findings := diag.Run(&diag.Input{Workloads: run.workloads, Host: run.host, Stat: statNode})
	if err := report(env.Stdout, o.format, run, findings); err != nil {
		return incompleteError{err}
	}
	if o.format == "text" {
		for _, n := range run.notes {
			fmt.Fprintf(env.Stderr, "volperm: note: %s\n", n)
		}
	}
	for _, f := range findings {
		if f.Severity >= threshold {
			return codeError{ExitFindings}
		}
	}
	return nil
}

func gather(ctx context.Context, o doctorOptions) (*doctorRun, error) {
	run := &doctorRun{}
	ep, epErr := engine.ResolveEndpoint("")
	var c *client.Client
	var facts *engine.Facts
	if epErr == nil {
		if cc, err := engine.Connect(ep); err == nil {
			c = cc
			if f, err := engine.ReadFacts(ctx, cc); err == nil {
				facts = &f
			} else {
				run.notes = append(run.notes, err.Error()+": image users and the running daemon could not be checked")
			}
		}
	} else {
		run.notes = append(run.notes, epErr.Error())
	}
	if c != nil {
		defer c.Close()
	}
	if (len(o.containers) > 0 || o.allContainers) && facts == nil {
		return nil, incompleteError{fmt.Errorf("cannot reach the docker daemon at %s to read containers", ep.Host)}
	}

	daemonMap, setup := daemonMapping(facts, ep, o.daemonConfig, run)
	// The host itself is checked with --host, or whenever a daemon answers
	// (then it is the host being diagnosed); a compose file analysed
	// statically may be meant for another machine.
	run.host = hostFacts(ep, run)
	if facts != nil || o.hostOnly || o.daemonConfig != "" {
		run.host.Remap = setup
	} else {
		run.host.SocketNode = nil
	}

	useCompose := !o.hostOnly && (len(o.files) > 0 || o.projectDir != "" || len(o.containers) == 0 && !o.allContainers)
	if useCompose {
		if len(o.files) == 0 && len(compose.DefaultFiles(dirOr(o.projectDir))) == 0 && (o.projectDir == "") {
			if len(o.containers) == 0 && !o.allContainers {
				return nil, incompleteError{errors.New("no compose file here (compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml): give -f FILE, --container NAME, --all-containers or --host")}
			}
		} else {
			p, err := compose.Load(ctx, compose.Options{Files: o.files, ProjectDir: o.projectDir, Env: os.Environ()})
			if err != nil {
				return nil, incompleteError{err}
			}
			run.files = p.Files
			images := map[string]*engine.ImageIdentity{}
			for _, w := range p.Workloads {
				w.UserRaw = p.RawUser[w.Name]
				applyMapping(&w, daemonMap)
				resolveFromImage(ctx, c, facts != nil, &w, images)
				run.workloads = append(run.workloads, w)
			}
		}
	}

	names := slices.Clone(o.containers)
	if o.allContainers {
		all, err := engine.Containers(ctx, c, true)
		if err != nil {
			return nil, incompleteError{err}
		}
		names = append(names, all...)
	}
	for _, n := range names {
		w, pid, err := engine.Container(ctx, c, n)
		if err != nil {
			return nil, incompleteError{err}
		}
		applyMapping(&w, daemonMap)
		if pid != 0 {
			if m, err := idmap.ReadProcess(pid); err == nil {
				w.Mapping, w.Remapped = m, !m.IsIdentity()
			}
		}
		run.workloads = append(run.workloads, w)
	}
	return run, nil
}

func dirOr(d string) string {
	if d == "" {
		return "."
	}
	return d
}

// daemonMapping is the remap containers get unless userns_mode is host,
// and the configured remap's setup for the host rules. A remap the daemon
// would refuse is a finding, not a failure: workloads are then analysed
// without it.
func daemonMapping(facts *engine.Facts, ep engine.Endpoint, cfgFlag string, run *doctorRun) (idmap.Mapping, *diag.RemapSetup) {
	src := remap.Sources{}
	if p, ok := host.ServingDockerd(host.DockerdProcesses("/proc"), ep.Host); ok {
		src.Dockerd = &p
	}
	cfgPath := cfgFlag
	if cfgPath == "" && src.Dockerd != nil {
		cfgPath, _ = src.Dockerd.Flag("--config-file")
	}
	if cfgPath == "" {
		cfgPath = host.DefaultDaemonConfig
	}
	src.Config, src.ConfigErr = host.ReadDaemonConfig(cfgPath)
	if facts != nil {
		src.Daemon = &remap.Daemon{Version: facts.Version, Userns: facts.Userns, RootSuffix: facts.RootSuffix}
	}
	v, vnote := daemonVersion("", facts)
	if vnote != "" {
		run.notes = append(run.notes, vnote)
	}
	src.Version = v

	// The host rules see the setup as userns check does.
	var setup *diag.RemapSetup
	if in, err := usernsHost(userns.System{Root: "/"}, cfgFlag, v, facts, src.Dockerd); err == nil {
		setup = userns.Assess(in.host, in.running).Setup
	} else {
		run.notes = append(run.notes, oneLine(err.Error())+": the remap setup is not checked")
	}

	res, err := remap.Resolve(remap.HostFiles, src)
	if err != nil {
		run.notes = append(run.notes, "the configured userns-remap cannot be laid out ("+oneLine(err.Error())+"): workloads are analysed without remapping")
		return idmap.HostIdentity(), setup
	}
	run.notes = append(run.notes, res.Notes...)
	return res.Mapping, setup
}

func applyMapping(w *workload.Workload, daemon idmap.Mapping) {
	if w.UsernsMode == "host" {
		w.Mapping, w.Remapped = idmap.HostIdentity(), false
		return
	}
	w.Mapping, w.Remapped = daemon, !daemon.IsIdentity()
}

// resolveFromImage resolves a compose workload's user in its image.
func resolveFromImage(ctx context.Context, c *client.Client, reachable bool, w *workload.Workload, cache map[string]*engine.ImageIdentity) {
	if !reachable || w.Image == "" {
		why := "no daemon answered"
		if w.Image == "" {
			why = "the service has no image: (build:)"
		}
		resolveWithoutImage(w, why)
		return
	}
	id, seen := cache[w.Image]
	if !seen {
		got, err := engine.ReadImageIdentity(ctx, c, w.Image)
		if err != nil {
			cache[w.Image] = nil
			resolveWithoutImage(w, fmt.Sprintf("image %s is not present (docker pull or build it)", w.Image))
			return
		}
		id = &got
		cache[w.Image] = id
	}
	if id == nil {
		resolveWithoutImage(w, fmt.Sprintf("image %s is not present (docker pull or build it)", w.Image))
		return
	}
	engine.Resolve(w, *id)
}

// resolveWithoutImage keeps what can be known from numeric ids alone.
func resolveWithoutImage(w *workload.Workload, why string) {
	u, g, hasG := strings.Cut(w.UserSpec, ":")
	_, uerr := identity.ParseID(u)
	_, gerr := identity.ParseID(g)
	if w.UserSpec != "" && uerr == nil && (!hasG || gerr == nil) {
		eu, err := identity.ResolveUser(w.UserSpec, nil, nil)
		if err == nil {
			gids, err := identity.AdditionalGroups(numericOnly(w.GroupAdd), nil)
			if err == nil {
				w.User, w.GroupAddGIDs = &eu, gids
			}
		}
		if !hasG {
			w.Unknown = append(w.Unknown, why+": the primary gid is assumed to be 0 and supplementary groups unknown")
		}
		return
	}
	w.Unknown = append(w.Unknown, why+": the effective user could not be checked")
}

func numericOnly(gs []string) []string {
	var out []string
	for _, g := range gs {
		if _, err := identity.ParseID(g); err == nil {
			out = append(out, g)
		}
	}
	return out
}

// hostFacts reads the local docker socket and host accounts.
func hostFacts(ep engine.Endpoint, run *doctorRun) diag.Host {
	h := diag.Host{HostUsers: map[uint32]string{}}
	users, _ := identity.ParsePasswdFile("/etc/passwd")
	for _, u := range users {
		if u.UID != 0 {
			h.HostUsers[u.UID] = u.Name
		}
	}
	if p, ok := strings.CutPrefix(ep.Host, "unix://"); ok {
		h.Socket = p
		if n, err := statNode(p); err == nil && n.Exists {
			h.SocketNode = &n
			groups, _ := identity.ParseGroupFile("/etc/group")
			if g, ok := groups.ByGID(n.GID); ok {
				h.SocketGroupMembers = g.Members
			}
		}
	}
	return h
}

// statNode is the rules' view of a host path.
func statNode(path string) (diag.Node, error) {
	f, err := access.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return diag.Node{}, nil
	}
	if err != nil {
		return diag.Node{}, err
	}
	st, err := os.Lstat(path)
	if err != nil {
		return diag.Node{}, err
	}
	return diag.Node{File: f, Exists: true, Socket: st.Mode()&os.ModeSocket != 0}, nil
}
