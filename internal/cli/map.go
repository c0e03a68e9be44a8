package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/volperm/volperm/internal/engine"
	"github.com/volperm/volperm/internal/host"
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/remap"
)

type mapOptions struct {
	remap         string
	files         remap.Files
	daemonConfig  string
	daemonVersion string
	pid           int
	container     string
	reverse       bool
	table         bool
	format        string
	root          string
}

func newMapCmd(env Env) *cobra.Command {
	o := mapOptions{files: remap.HostFiles}
	cmd := &cobra.Command{
		Use:   "map [flags] [ID[:GID] ...]",
		Short: "Translate container uid:gid to host uid:gid (and back) under the daemon's userns-remap",
		Long: `Translate container ids to host ids, or host ids to container ids with --reverse,
exactly as the Docker daemon lays out its userns-remap from /etc/subuid and /etc/subgid.

Without --remap the remap in force is found from the running daemon, daemon.json and the
dockerd command line. --pid and --container read a running process's real maps instead.
Without IDs (or with --table) the whole uid and gid maps are printed.`,
		Example: `  volperm map 0 33 1000:1000
  volperm map --remap vptest --table
  volperm map --reverse 100033
  volperm map --container web --format json 0 33`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMap(cmd.Context(), env, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.remap, "remap", "", "userns-remap spec to lay out: default, USER, USER:GROUP, UID or UID:GID")
	f.StringVar(&o.files.SubUID, "subuid", o.files.SubUID, "subordinate uid file")
	f.StringVar(&o.files.SubGID, "subgid", o.files.SubGID, "subordinate gid file")
	f.StringVar(&o.files.Passwd, "passwd", o.files.Passwd, "passwd file the remap user is looked up in")
	f.StringVar(&o.files.Group, "group", o.files.Group, "group file the remap group is looked up in")
	f.StringVar(&o.daemonConfig, "daemon-config", "", "daemon.json to read (default: the running dockerd's --config-file, else "+host.DefaultDaemonConfig+")")
	f.StringVar(&o.daemonVersion, "daemon-version", "", "emulate this dockerd version (default: the running daemon's)")
	f.IntVar(&o.pid, "pid", 0, "read the maps of this running process")
	f.StringVar(&o.container, "container", "", "read the maps of this running container")
	f.BoolVar(&o.reverse, "reverse", false, "translate host ids to container ids")
	f.BoolVar(&o.table, "table", false, "print the whole uid and gid maps and the Docker root dir")
	f.StringVarP(&o.format, "format", "o", "text", "output format: text or json")
	f.StringVar(&o.root, "root", "", "read /etc files (and daemon.json) under this directory, a host image; no daemon is asked")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if o.root == "" {
			return nil
		}
		for flag, dst := range map[string]*string{"subuid": &o.files.SubUID, "subgid": &o.files.SubGID, "passwd": &o.files.Passwd, "group": &o.files.Group, "daemon-config": &o.daemonConfig} {
			if !cmd.Flags().Changed(flag) {
				def := *dst
				if flag == "daemon-config" {
					def = host.DefaultDaemonConfig
				}
				*dst = filepath.Join(o.root, def)
			}
		}
		return nil
	}
	return cmd
}

// idArg is one ID[:GID] argument.
func parseIDArg(s string) (idmap.Pair, error) {
	us, gs, hasGID := strings.Cut(s, ":")
	u, err := identity.ParseID(us)
	if err != nil {
		return idmap.Pair{}, usagef("id %q: uid %v", s, err)
	}
	g := u
	if hasGID {
		if g, err = identity.ParseID(gs); err != nil {
			return idmap.Pair{}, usagef("id %q: gid %v", s, err)
		}
	}
	return idmap.Pair{UID: u, GID: g}, nil
}

// mapping is a resolved mapping and where it came from.
type mapping struct {
	idmap.Mapping
	remapped bool
	rootDir  string // the Docker root dir the daemon uses
	spec     string
	source   string
	notes    []string
}

func runMap(ctx context.Context, env Env, o mapOptions, args []string) error {
	if o.format != "text" && o.format != "json" {
		return usagef("--format %q: want text or json", o.format)
	}
	sources := 0
	for _, set := range []bool{o.remap != "", o.pid != 0, o.container != ""} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		return usagef("--remap, --pid and --container are alternatives: give one")
	}
	if o.table && len(args) > 0 {
		return usagef("--table prints the whole maps: give it without IDs, or IDs without it")
	}
	ids := make([]idmap.Pair, 0, len(args))
	for _, a := range args {
		p, err := parseIDArg(a)
		if err != nil {
			return err
		}
		ids = append(ids, p)
	}
	m, err := resolveMapping(ctx, o)
	if err != nil {
		return err
	}
	if o.format == "text" {
		fmt.Fprintf(env.Stderr, "volperm: %s\n", describe(m))
	}
	for _, n := range m.notes {
		fmt.Fprintf(env.Stderr, "volperm: note: %s\n", n)
	}
	if len(ids) == 0 {
		return printTable(env.Stdout, o.format, m)
	}
	return printIDs(env.Stdout, o.format, m.Mapping, ids, o.reverse)
}

func describe(m mapping) string {
	if !m.remapped {
		return "no userns remapping (" + m.source + "): container ids are host ids"
	}
	return fmt.Sprintf("userns remap %s, from %s", m.spec, m.source)
}

func resolveMapping(ctx context.Context, o mapOptions) (mapping, error) {
	if o.pid != 0 {
		return processMapping(o.pid, fmt.Sprintf("process %d", o.pid))
	}
	ep, epErr := engine.ResolveEndpoint("")
	var facts *engine.Facts
	if o.root != "" {
		epErr = fmt.Errorf("--root %s: not asking the local daemon about another host's files", o.root)
	}
	if epErr == nil {
		if c, err := engine.Connect(ep); err == nil {
			defer c.Close()
			if o.container != "" {
				pid, err := engine.ContainerPID(ctx, c, o.container)
				if err != nil {
					return mapping{}, err
				}
				return processMapping(pid, fmt.Sprintf("container %s (pid %d)", o.container, pid))
			}
			if f, err := engine.ReadFacts(ctx, c); err == nil {
				facts = &f
			}
		}
	}
	if o.container != "" {
		if epErr != nil {
			return mapping{}, incompleteError{epErr}
		}
		return mapping{}, incompleteError{fmt.Errorf("cannot reach the docker daemon at %s to find container %s", ep.Host, o.container)}
	}

	src := remap.Sources{Flag: o.remap}
	var m mapping
	if epErr != nil && o.root == "" {
		m.notes = append(m.notes, epErr.Error())
	}
	if o.remap == "" && o.root == "" {
		if p, ok := host.ServingDockerd(host.DockerdProcesses("/proc"), ep.Host); ok {
			src.Dockerd = &p
		}
	}
	cfgPath := o.daemonConfig
	if cfgPath == "" && src.Dockerd != nil {
		cfgPath, _ = src.Dockerd.Flag("--config-file")
	}
	if cfgPath == "" {
		cfgPath = host.DefaultDaemonConfig
	}
	if o.remap == "" || o.daemonConfig != "" {
		src.Config, src.ConfigErr = host.ReadDaemonConfig(cfgPath)
	}
	if facts != nil {
		src.Daemon = &remap.Daemon{Version: facts.Version, Userns: facts.Userns, RootSuffix: facts.RootSuffix}
	}
	v, vnote := daemonVersion(o.daemonVersion, facts)
	if vnote != "" {
		m.notes = append(m.notes, vnote)
	}
	src.Version = v
	res, err := remap.Resolve(o.files, src)
	if err != nil {
		return mapping{}, err
	}
	m.Mapping, m.remapped, m.source, m.spec = res.Mapping, res.Remapped, res.Source, res.Spec
	m.notes = append(m.notes, res.Notes...)
	m.rootDir = rootDir(facts, src, res)
	return m, nil
}

func processMapping(pid int, what string) (mapping, error) {
	mp, err := idmap.ReadProcess(pid)
	if err != nil {
		return mapping{}, err
	}
	return mapping{Mapping: mp, remapped: !mp.IsIdentity(), source: what, spec: "as the kernel holds it"}, nil
}

// daemonVersion picks the dockerd behaviour to emulate: the flag, the
// running daemon, the installed dockerd binary, else the newest known.
func daemonVersion(flag string, facts *engine.Facts) (idmap.Version, string) {
	if flag != "" {
		v, err := idmap.ParseVersion(flag)
		if err != nil {
			return idmap.Latest, err.Error() + "; emulating " + idmap.Latest.String()
		}
		return v, ""
	}
	if facts != nil {
		if v, err := idmap.ParseVersion(facts.Version); err == nil {
			return v, ""
		}
	}
	if out, err := exec.Command("dockerd", "--version").Output(); err == nil {
		// "Docker version 20.10.24+dfsg1, build 5d6db84"
		f := strings.Fields(strings.TrimPrefix(string(out), "Docker version "))
		if len(f) > 0 {
			if v, err := idmap.ParseVersion(strings.TrimSuffix(f[0], ",")); err == nil {
				return v, ""
			}
		}
	}
	return idmap.Latest, "daemon version unknown: emulating dockerd " + idmap.Latest.String()
}

// rootDir is the Docker Root Dir the daemon uses (or will use) for this
// mapping: <data-root>/<uid>.<gid> under remapping.
func rootDir(facts *engine.Facts, src remap.Sources, res remap.Result) string {
	if !res.Remapped {
		if facts != nil {
			return facts.RootDir
		}
		return ""
	}
	dataRoot := "/var/lib/docker"
	if src.Config != nil && src.Config.DataRoot != "" {
		dataRoot = src.Config.DataRoot
	}
	if src.Dockerd != nil {
		if d, ok := src.Dockerd.Flag("--data-root", "-g", "--graph"); ok {
			dataRoot = d
		}
	}
	if facts != nil && facts.Userns {
		dataRoot = filepath.Dir(facts.RootDir)
	}
	return filepath.Join(dataRoot, res.Mapping.RootDirSuffix())
}

type jsonIDs struct {
	Container idmap.Pair `json:"container"`
	Host      idmap.Pair `json:"host"`
	Mapped    bool       `json:"mapped"`
}

func printIDs(w io.Writer, format string, m idmap.Mapping, ids []idmap.Pair, reverse bool) error {
	out := make([]jsonIDs, len(ids))
	for i, p := range ids {
		if reverse {
			c, ok := m.ToContainer(p)
			out[i] = jsonIDs{Container: c, Host: p, Mapped: ok}
		} else {
			h, ok := m.ToHost(p)
			out[i] = jsonIDs{Container: p, Host: h, Mapped: ok}
		}
	}
	if format == "json" {
		return writeJSON(w, out)
	}
	for _, r := range out {
		from, to := fmt.Sprintf("container %d:%d", r.Container.UID, r.Container.GID), fmt.Sprintf("host %d:%d", r.Host.UID, r.Host.GID)
		if reverse {
			from, to = to, from
		}
		suffix := ""
		if !r.Mapped {
			suffix = " (unmapped: shows as the overflow id " + fmt.Sprint(idmap.Overflow) + ")"
			if !reverse {
				suffix = " (unmapped: runc refuses to run a process with this id)"
			}
		}
		fmt.Fprintf(w, "%s -> %s%s\n", from, to, suffix)
	}
	return nil
}

type jsonTable struct {
	UIDMap        idmap.Map `json:"uid_map"`
	GIDMap        idmap.Map `json:"gid_map"`
	Remapped      bool      `json:"remapped"`
	RootDirSuffix string    `json:"root_dir_suffix"`
	RootDir       string    `json:"root_dir,omitempty"`
}

func printTable(w io.Writer, format string, m mapping) error {
	t := jsonTable{UIDMap: m.UID, GIDMap: m.GID, Remapped: m.remapped, RootDir: m.rootDir}
	if m.remapped {
		t.RootDirSuffix = m.RootDirSuffix()
	}
	if format == "json" {
		return writeJSON(w, t)
	}
	for _, part := range []struct {
		name string
		m    idmap.Map
	}{{"uid", m.UID}, {"gid", m.GID}} {
		fmt.Fprintf(w, "%s map:\n%10s %10s %10s\n", part.name, "container", "host", "size")
		fmt.Fprint(w, part.m.String())
	}
	if m.remapped {
		fmt.Fprintf(w, "docker root dir suffix: %s\n", t.RootDirSuffix)
	}
	if m.rootDir != "" {
		fmt.Fprintf(w, "docker root dir: %s\n", m.rootDir)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return incompleteError{errors.New("writing JSON: " + err.Error())}
	}
	return nil
}
