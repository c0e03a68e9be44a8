package diag

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/volperm/volperm/internal/access"
	"github.com/volperm/volperm/internal/acl"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/plan"
	"github.com/volperm/volperm/internal/workload"
)

// Rules is every rule, in ID order. IDs are stable and never reused.
var Rules = []Rule{
	{ID: "VP101", Name: "bind-source-missing", Summary: "bind source does not exist: Docker creates it as (remapped) root, mode 0755",
		Doc: "For -v and compose short syntax the daemon creates a missing bind source, and every missing parent, with mkdir and chmod 0755 owned by the remapped root pair (root:root without remapping). A non-root container user then cannot create files in it. With create_host_path: false (or --mount) the container is refused instead.",
		Run: perBind(missingSource)},
	{ID: "VP102", Name: "bind-source-not-writable", Summary: "read-write bind source not writable by the workload's host uid/gids",
		Doc: "Evaluated as the kernel does: owner, group and other bits and POSIX ACL entries limited by the mask, with the container's ids translated to host ids through the remap. Host parent directories do not matter: the daemon resolves the source as host root.",
		Run: perBind(notWritable)},
	{ID: "VP103", Name: "bind-source-not-readable", Summary: "bind source not readable (or not listable) by the workload's host uid/gids",
		Doc: "The container user needs r (and x for a directory) on the source itself, for read-only mounts too.",
		Run: perBind(notReadable)},
	{ID: "VP104", Name: "bind-source-world-writable", Summary: "bind source writable by every host user (o+w without the sticky bit)",
		Doc: "It works, but any host user and any container can write there. Grant the workload's uid instead (owner or ACL).",
		Run: perBind(worldWritable)},
	{ID: "VP105", Name: "bind-source-unmapped-owner", Summary: "under userns-remap, the source's owner is outside the remap range (nobody/nogroup inside)",
		Doc: "An id with no mapping shows as 65534 inside the container; no container process can be its owner or group, and container root's capabilities do not apply to it, so only the other bits count.",
		Run: perBind(unmappedOwner)},
	{ID: "VP201", Name: "docker-socket-mounted", Summary: "the Docker socket is mounted: root-equivalent control of the host",
		Doc: "Whoever can write to the socket can start a privileged container with the host's / mounted.",
		Run: perBind(socketMounted)},
	{ID: "VP202", Name: "docker-socket-group-missing", Summary: "non-root user lacks the socket's gid among its groups (DooD permission denied)",
		Doc: "The socket is root:<docker gid> 0660 on the host and shows the same numeric gid inside, usually with no name. The container user needs that gid as a supplementary group: group_add with the number.",
		Run: perBind(socketGroup)},
	{ID: "VP203", Name: "docker-socket-open", Summary: "the host's Docker socket is accessible to every user (o+rw, e.g. chmod 666)",
		Doc: "Every local user and every container that can reach it controls the host as root. dockerd creates it root:docker 0660.",
		Run: socketOpen},
	{ID: "VP204", Name: "docker-socket-remapped", Summary: "Docker socket mounted into a remapped container without userns_mode: host",
		Doc: "Under userns-remap the host's docker gid has no mapping in the container's user namespace: the socket shows as nogroup and no container user can use it.",
		Run: perBind(socketRemapped)},
	{ID: "VP301", Name: "root-writes-system-path", Summary: "container root (no remap) has a read-write bind of a host system path",
		Doc: "Container root is host root: it can delete or replace host binaries and configuration (seed 001: rm through -v /bin:/host).",
		Run: perBind(systemPath)},
	{ID: "VP302", Name: "remap-will-not-start", Summary: "userns-remap is configured but dockerd will not start with it",
		Doc: "The remap user or group does not exist, or has no line in /etc/subuid or /etc/subgid, or a line is malformed; or daemon.json is not JSON dockerd reads, userns-remap is set both on dockerd's command line and in daemon.json, or a directory above the data root is closed to the remapped root. dockerd exits at start-up with one line on stderr, which systemd shows only as \"Failed to start Docker Application Container Engine\".",
		Run: remapWillNotStart},
	{ID: "VP303", Name: "userns-unavailable", Summary: "user namespaces are unavailable in the kernel while remapping is configured",
		Doc: "CONFIG_USER_NS is off (\"USER namespaces aren't enabled in the kernel\") or user.max_user_namespaces is 0: remapped containers cannot start.",
		Run: usernsUnavailable},
	{ID: "VP304", Name: "subordinate-ranges-overlap", Summary: "subordinate id ranges overlap between users, or cover real host accounts",
		Doc: "Two owners of one host id range can each act as those ids: a container of one can read and write what the other's containers own. A range that covers a real host account makes that account's files container-owned. The deliberate \"host user is container root\" line of seeds 003/004 (a range starting at the owner's own id, or a one-id first line of the remap user) is reported as info.",
		Run: rangesOverlap},
	{ID: "VP305", Name: "remap-range-small", Summary: "the remap user's subordinate ranges give fewer than 65536 ids",
		Doc: "Container ids beyond the ranges have no host id: pulling an image with a file owned by one fails, and so does a process running as one. dockerd itself gives dockremap 65536.",
		Run: rangeTooSmall},
	{ID: "VP306", Name: "remap-not-in-force", Summary: "the running dockerd's remap differs from its configuration",
		Doc: "userns-remap only takes effect when dockerd starts: after an edit of daemon.json, /etc/subuid or /etc/subgid the running daemon still uses the old layout (Engine API Info: name=userns in SecurityOptions, the UID.GID suffix of DockerRootDir), and the next restart switches data roots, so images and containers seem to vanish (seed 003).",
		Run: remapNotInForce},
	{ID: "VP401", Name: "user-not-in-image", Summary: "user: or group_add names a user or group the image does not have",
		Doc: "The daemon resolves names in the image's own /etc/passwd and /etc/group at start and refuses the container.",
		Run: userMissing},
	{ID: "VP402", Name: "shared-path-no-common-group", Summary: "two workloads write one host path with different host uids and no group both can write through",
		Doc: "Files and unix sockets one creates are unusable by the other (seed 004). Give both a shared gid, make the directory setgid to it, and add a default ACL.",
		Run: sharedPath},
	{ID: "VP403", Name: "user-interpolated-empty", Summary: "user: was interpolated to an empty or partial value",
		Doc: "Shells set UID but do not export it, so \"${UID}:${GID}\" becomes \":\" in compose and the container runs as root or fails.",
		Run: userInterpolation},
}

// bindCtx is one bind mount of one workload with its host metadata.
type bindCtx struct {
	in   *Input
	w    *workload.Workload
	m    workload.Mount
	node Node
}

func perBind(fn func(b bindCtx) []Finding) func(*Input) []Finding {
	return func(in *Input) []Finding {
		var out []Finding
		for i := range in.Workloads {
			w := &in.Workloads[i]
			for _, m := range w.Mounts {
				if m.Type != "bind" || m.Source == "" {
					continue
				}
				node, err := in.Stat(m.Source)
				if err != nil {
					node = Node{}
				}
				for _, f := range fn(bindCtx{in, w, m, node}) {
					f.Workload, f.Mount, f.Path = w.Name, m.Target, m.Source
					if f.File == "" {
						f.File, f.Line = w.Origin.File, m.Line
						if f.Line == 0 {
							f.Line = w.Origin.Line
						}
					}
					out = append(out, f)
				}
			}
		}
		return out
	}
}

// who says who the workload's process is, in uid terms.
func who(w *workload.Workload) string {
	if w.User == nil {
		return "the container user"
	}
	name := ""
	if w.User.Name != "" {
		name = " (" + w.User.Name + ")"
	}
	if !w.Remapped {
		return fmt.Sprintf("container uid %d%s, which is host uid %d (no userns remap)", w.User.UID, name, w.User.UID)
	}
	h, ok := w.Mapping.UID.ToHost(w.User.UID)
	if !ok {
		return fmt.Sprintf("container uid %d%s, which has no host id under the remap", w.User.UID, name)
	}
	return fmt.Sprintf("container uid %d%s, which is host uid %d under the userns remap", w.User.UID, name, h)
}

func cred(w *workload.Workload) (access.Cred, bool) {
	uid, gids, ok := w.HostIDs()
	if !ok {
		return access.Cred{}, false
	}
	c := access.Cred{UID: uid, GIDs: gids, CapDAC: w.User.UID == 0}
	if w.Remapped {
		m := w.Mapping
		c.Userns = &m
	}
	return c, true
}

func primaryHost(w *workload.Workload) idmap.Pair {
	p, _ := w.Mapping.ToHost(idmap.Pair{UID: w.User.UID, GID: w.User.GID})
	return p
}

func missingSource(b bindCtx) []Finding {
	if b.node.Exists || isDockerSocketPath(b.in, b.m.Source) {
		return nil
	}
	root := b.w.Mapping.RootPair()
	if !b.m.CreateSource {
		f := Finding{Severity: Error, Message: fmt.Sprintf(
			"%s does not exist and create_host_path is false (or --mount was used): the daemon refuses the container with `invalid mount config for type \"bind\": bind source path does not exist: %s`.",
			b.m.Source, b.m.Source)}
		f.Fix = createFix(b, root)
		return []Finding{f}
	}
	msg := fmt.Sprintf("%s does not exist. Docker will create it, and every missing parent, owned by host %d:%d (container root%s) with mode 0755.",
		b.m.Source, root.UID, root.GID, map[bool]string{true: " under the remap", false: ""}[b.w.Remapped])
	sev := Info
	if b.w.User != nil && b.w.User.UID != 0 && !b.m.ReadOnly {
		sev = Error
		msg += fmt.Sprintf(" %s is not its owner and 0755 gives others no write: creating files in %s fails with EACCES (permission denied).", upperFirst(who(b.w)), b.m.Target)
	} else if b.w.User == nil {
		sev = Warning
		msg += " The container user could not be checked; unless it is root it will not be able to write there."
	}
	return []Finding{{Severity: sev, Message: msg, Fix: createFix(b, root)}}
}

func createFix(b bindCtx, root idmap.Pair) []Fix {
	owner := root
	desc := "create it yourself, owned by container root as the daemon would"
	if b.w.User != nil {
		owner = primaryHost(b.w)
		desc = fmt.Sprintf("create it owned by the workload's host ids %d:%d, so it is writable without opening it to others", owner.UID, owner.GID)
	}
	return []Fix{fixOf(desc, plan.Mkdir{Path: b.m.Source, UID: owner.UID, GID: owner.GID, Mode: 0o755})}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func needed(dir bool, write bool) access.Want {
	w := acl.Read
	if write {
		w = acl.Write
	}
	if dir {
		w |= acl.Execute
	}
	return w
}

func unmapped(b bindCtx) bool {
	if !b.w.Remapped || !b.node.Exists {
		return false
	}
	_, uok := b.w.Mapping.UID.ToContainer(b.node.UID)
	_, gok := b.w.Mapping.GID.ToContainer(b.node.GID)
	return !uok || !gok
}

func notReadable(b bindCtx) []Finding {
	c, ok := cred(b.w)
	if !b.node.Exists || !ok || b.node.Socket {
		return nil
	}
	d := access.Check(b.node.File, c, needed(b.node.Dir, false))
	if d.Allowed || unmapped(b) {
		return nil
	}
	what := "read"
	if b.node.Dir {
		what = "list and enter"
	}
	return []Finding{{Severity: Error, Message: fmt.Sprintf("%s cannot %s %s (owner %d:%d, mode %04o%s): %s.",
		upperFirst(who(b.w)), what, b.m.Source, b.node.UID, b.node.GID, b.node.Mode, aclNote(b.node), d.Reason),
		Fix: grantFixes(b, false)}}
}

func notWritable(b bindCtx) []Finding {
	c, ok := cred(b.w)
	if !b.node.Exists || !ok || b.m.ReadOnly || b.node.Socket {
		return nil
	}
	if !access.Check(b.node.File, c, needed(b.node.Dir, false)).Allowed || unmapped(b) {
		return nil // VP103 or VP105 says it
	}
	d := access.Check(b.node.File, c, needed(b.node.Dir, true))
	if d.Allowed {
		return nil
	}
	return []Finding{{Severity: Error, Message: fmt.Sprintf("%s cannot write in %s (owner %d:%d, mode %04o%s): %s; writes to %s fail with EACCES.",
		upperFirst(who(b.w)), b.m.Source, b.node.UID, b.node.GID, b.node.Mode, aclNote(b.node), d.Reason, b.m.Target),
		Fix: grantFixes(b, true)}}
}

func aclNote(n Node) string {
	if n.ACL != nil && !n.ACL.Minimal() {
		return ", ACL " + n.ACL.String()
	}
	return ""
}

// grantFixes proposes the least-privilege grant: the owner when the path
// belongs to no host user (Docker or root made it), else a named ACL entry
// plus a default entry so new files inherit it.
func grantFixes(b bindCtx, write bool) []Fix {
	h := primaryHost(b.w)
	perm := "rX"
	if write {
		perm = "rwX"
	}
	chown := fixOf(fmt.Sprintf("make the workload's host ids %d:%d the owner", h.UID, h.GID),
		plan.Chown{Path: b.m.Source, UID: h.UID, GID: h.GID})
	grant := fixOf(fmt.Sprintf("keep the owner and grant host uid %d %s with a POSIX ACL (and a default ACL for new files)", h.UID, perm),
		plan.Grant{Path: b.m.Source, ID: h.UID, Perm: perm, Default: b.node.Dir})
	_, hostUser := b.in.Host.HostUsers[b.node.UID]
	if hostUser && b.node.UID != 0 || plan.CheckOwnable(b.m.Source) != nil {
		return []Fix{grant, chown}
	}
	return []Fix{chown, grant}
}

func worldWritable(b bindCtx) []Finding {
	if !b.node.Exists || b.node.Mode&0o002 == 0 || b.node.Mode&0o1000 != 0 && b.node.Dir || b.node.Socket {
		return nil
	}
	f := Finding{Severity: Warning, Message: fmt.Sprintf("%s is writable by every host user and every container (mode %04o): the usual chmod 777 \"fix\". Grant the workload's ids instead.", b.m.Source, b.node.Mode)}
	if b.w.User != nil {
		h := primaryHost(b.w)
		f.Fix = []Fix{fixOf(fmt.Sprintf("make host %d:%d the owner and drop the world write bit", h.UID, h.GID),
			plan.Chown{Path: b.m.Source, UID: h.UID, GID: h.GID}, plan.Chmod{Path: b.m.Source, Clear: 0o002})}
	} else {
		f.Fix = []Fix{fixOf("drop the world write bit after granting the workload's uid", plan.Chmod{Path: b.m.Source, Clear: 0o002})}
	}
	return []Finding{f}
}

func unmappedOwner(b bindCtx) []Finding {
	if !unmapped(b) || b.node.Socket {
		return nil
	}
	sev := Warning
	consequence := "only its other bits apply, which are the same for every user"
	if c, ok := cred(b.w); ok {
		if d := access.Check(b.node.File, c, needed(b.node.Dir, !b.m.ReadOnly)); !d.Allowed {
			sev = Error
			consequence = "so " + who(b.w) + " is refused (EACCES): " + d.Reason
		}
	}
	cu, _ := b.w.Mapping.UID.ToContainer(b.node.UID)
	cg, _ := b.w.Mapping.GID.ToContainer(b.node.GID)
	f := Finding{Severity: sev, Message: fmt.Sprintf(
		"%s is owned by host %d:%d, outside the userns remap: inside the container it shows as %d:%d (nobody/nogroup). No container process can own it or be in its group and container root's capabilities do not apply to it; %s.",
		b.m.Source, b.node.UID, b.node.GID, cu, cg, consequence)}
	if b.w.User != nil {
		h := primaryHost(b.w)
		f.Fix = []Fix{fixOf(fmt.Sprintf("give it to the workload's mapped ids %d:%d (not chmod)", h.UID, h.GID),
			plan.Chown{Path: b.m.Source, UID: h.UID, GID: h.GID})}
	}
	f.Fix = append(f.Fix, Fix{Description: "or re-own a whole tree written before remapping was enabled",
		Shell: fmt.Sprintf("volperm shift %s --from host --to remap:USER", shellQuote(b.m.Source))})
	return []Finding{f}
}

// composeFix is a fix made of a compose edit to the workload's service, in
// the override file beside its compose file; for a container it is YAML to
// apply by hand.
func composeFix(w *workload.Workload, desc string, e plan.ComposeEdit, more ...plan.Step) Fix {
	e.Service = w.Name
	if w.Origin.File == "" {
		f := fixOf(desc, append([]plan.Step{e}, more...)...)
		f.Steps = more
		return f
	}
	e.File = OverrideFile(w.Origin.File)
	return fixOf(desc, append(more, e)...)
}

// OverrideFile is the override docker compose merges automatically beside
// a compose file: compose.override.yaml, or docker-compose.override.yml
// for the older name.
func OverrideFile(composeFile string) string {
	dir, base := filepath.Dir(composeFile), filepath.Base(composeFile)
	if strings.HasPrefix(base, "docker-compose") {
		return filepath.Join(dir, "docker-compose.override.yml")
	}
	return filepath.Join(dir, "compose.override.yaml")
}

// isDockerSocketPath says whether path is the daemon's socket.
func isDockerSocketPath(in *Input, path string) bool {
	clean := normRun(filepath.Clean(path))
	if in.Host.Socket != "" && clean == normRun(in.Host.Socket) {
		return true
	}
	return filepath.Base(clean) == "docker.sock"
}

func normRun(p string) string {
	if strings.HasPrefix(p, "/run/") {
		return "/var" + p
	}
	return p
}

func socketMounted(b bindCtx) []Finding {
	if !isDockerSocketPath(b.in, b.m.Source) {
		return nil
	}
	return []Finding{{Severity: Warning, Message: fmt.Sprintf(
		"%s is the Docker socket: anything in %s that can write to it controls the host as root (it can run a privileged container with the host's / mounted).", b.m.Source, b.w.Name),
		Fix: []Fix{{Description: "mount it only where needed; consider a filtering socket proxy, or rootless Docker"}}}}
}

func socketRemapped(b bindCtx) []Finding {
	if !isDockerSocketPath(b.in, b.m.Source) || !b.w.Remapped {
		return nil
	}
	gid := "its gid"
	if b.node.Exists {
		gid = fmt.Sprintf("gid %d", b.node.GID)
	}
	return []Finding{{Severity: Error, Message: fmt.Sprintf(
		"%s is mounted into a container under userns-remap: the socket's %s has no mapping in the container's user namespace, so it shows as nogroup (65534) and no container user can connect (permission denied).", b.m.Source, gid),
		Fix: []Fix{composeFix(b.w, "run this service in the host user namespace", plan.ComposeEdit{UsernsMode: "host"})}}}
}

func socketGroup(b bindCtx) []Finding {
	if !isDockerSocketPath(b.in, b.m.Source) || b.w.Remapped || !b.node.Exists || b.w.User == nil || b.w.User.UID == 0 {
		return nil
	}
	c, _ := cred(b.w)
	d := access.Check(b.node.File, c, acl.Read|acl.Write)
	if d.Allowed {
		return nil
	}
	gid := b.node.GID
	return []Finding{{Severity: Error, Message: fmt.Sprintf(
		"%s cannot connect to the Docker socket %s (root:%d mode %04o): %s. Inside the container the socket's group shows as the bare number %d, usually with no name.",
		upperFirst(who(b.w)), b.m.Source, gid, b.node.Mode, d.Reason, gid),
		Fix: []Fix{composeFix(b.w, fmt.Sprintf("add the socket's gid %d to the service's groups (numeric: the name need not exist in the image)", gid),
			plan.ComposeEdit{GroupAdd: fmt.Sprint(gid)})}}}
}

func socketOpen(in *Input) []Finding {
	n := in.Host.SocketNode
	if n == nil || !n.Exists || n.Mode&0o006 != 0o006 {
		return nil
	}
	msg := fmt.Sprintf("The Docker socket %s has mode %04o: every local user (and every container that can reach it) controls the host as root.", in.Host.Socket, n.Mode)
	if len(in.Host.SocketGroupMembers) > 0 {
		msg += fmt.Sprintf(" Users in its group (gid %d): %s.", n.GID, strings.Join(in.Host.SocketGroupMembers, ", "))
	}
	return []Finding{{Severity: Error, Path: in.Host.Socket, Message: msg,
		Fix: []Fix{fixOf("restore the daemon's own mode (0660) and grant access through the docker group", plan.Chmod{Path: in.Host.Socket, Clear: 0o007})}}}
}

// SystemPaths are host paths container root must not write to.
var SystemPaths = []string{"/", "/bin", "/boot", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/root", "/sbin", "/usr", "/var/lib/docker", "/sys", "/proc", "/dev"}

func systemPath(b bindCtx) []Finding {
	if b.w.Remapped || b.m.ReadOnly || b.w.User == nil || b.w.User.UID != 0 {
		return nil
	}
	src := filepath.Clean(b.m.Source)
	hit := ""
	for _, p := range SystemPaths {
		if src == p || p != "/" && strings.HasPrefix(src, p+"/") {
			hit = p
		}
	}
	if hit == "" {
		return nil
	}
	return []Finding{{Severity: Error, Message: fmt.Sprintf(
		"%s runs as container root without userns remapping, which is host root, and mounts %s read-write: it can delete or replace the host's files there (under %s).",
		b.w.Name, b.m.Source, hit),
		Fix: []Fix{
			composeFix(b.w, "mount it read-only", plan.ComposeEdit{Volume: b.m.Source + ":" + b.m.Target + ":ro"}),
			{Description: "or run as a non-root user", YAML: fmt.Sprintf("services:\n  %s:\n    user: \"1000:1000\"\n", b.w.Name)},
			{Description: "or enable userns-remap so container root is an unprivileged host uid", Shell: "volperm userns plan --user default"},
		}}}
}

func userMissing(in *Input) []Finding {
	var out []Finding
	for _, w := range in.Workloads {
		if w.UserErr == nil {
			continue
		}
		out = append(out, Finding{Severity: Error, Workload: w.Name, File: w.Origin.File, Line: w.Origin.Line,
			Message: fmt.Sprintf("The daemon will refuse to start %s: %v (names are looked up in the image's own /etc/passwd and /etc/group, not the host's).", w.Name, w.UserErr),
			Fix:     []Fix{{Description: "use numeric ids, which need no entry in the image, or add the user/group to the image"}}})
	}
	return out
}

func userInterpolation(in *Input) []Finding {
	var out []Finding
	for _, w := range in.Workloads {
		if !strings.Contains(w.UserRaw, "$") {
			continue
		}
		u, g, hasG := strings.Cut(w.UserSpec, ":")
		if w.UserSpec != "" && u != "" && (!hasG || g != "") {
			continue
		}
		vars := slices.Collect(func(yield func(string) bool) {
			for _, f := range strings.FieldsFunc(w.UserRaw, func(r rune) bool {
				return !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
			}) {
				if strings.Contains(w.UserRaw, "$"+f) || strings.Contains(w.UserRaw, "${"+f) {
					if !yield(f) {
						return
					}
				}
			}
		})
		out = append(out, Finding{Severity: Error, Workload: w.Name, File: w.Origin.File, Line: w.Origin.Line,
			Message: fmt.Sprintf("user: %q became %q after interpolation: %s not set in the environment docker compose sees. Shells set UID (and zsh GID) as shell variables without exporting them, so the service runs as root or fails to start.",
				w.UserRaw, w.UserSpec, strings.Join(vars, " and ")+map[bool]string{true: " are", false: " is"}[len(vars) > 1]),
			Fix: []Fix{
				{Description: "export them for docker compose", Shell: "export UID GID=\"$(id -g)\""},
				{Description: "or write them to the project's .env file", Shell: "printf 'UID=%s\\nGID=%s\\n' \"$(id -u)\" \"$(id -g)\" >> .env"},
			}})
	}
	return out
}

func sharedPath(in *Input) []Finding {
	type user struct {
		w *workload.Workload
		m workload.Mount
	}
	bySource := map[string][]user{}
	var order []string
	for i := range in.Workloads {
		w := &in.Workloads[i]
		for _, m := range w.Mounts {
			if m.Type != "bind" || m.ReadOnly || w.User == nil {
				continue
			}
			src := filepath.Clean(m.Source)
			if _, seen := bySource[src]; !seen {
				order = append(order, src)
			}
			bySource[src] = append(bySource[src], user{w, m})
		}
	}
	var out []Finding
	for _, src := range order {
		users := bySource[src]
		node, err := in.Stat(src)
		if err != nil || !node.Exists || !node.Dir {
			continue
		}
		for i := 0; i < len(users); i++ {
			for j := i + 1; j < len(users); j++ {
				a, b := users[i], users[j]
				au, ag, _ := a.w.HostIDs()
				bu, bg, _ := b.w.HostIDs()
				if au == bu || a.w.User.UID == 0 && !a.w.Remapped || b.w.User.UID == 0 && !b.w.Remapped {
					continue
				}
				if commonWritableGroup(node, ag, bg) {
					continue
				}
				msg := fmt.Sprintf("%s (host uid %d) and %s (host uid %d) both write %s, but no group both carry can write there: files and unix sockets one creates (mode 0644/0755 by default) are not writable by the other.",
					a.w.Name, au, b.w.Name, bu, src)
				f := Finding{Severity: Warning, Workload: a.w.Name, Mount: a.m.Target, Path: src, File: a.w.Origin.File, Line: a.m.Line, Message: msg}
				// The shared group is one workload's primary group, added to
				// the other; it must have a mapping in the other's user
				// namespace, or group_add would name the overflow gid.
				owner, joiner, shared := a.w, b.w, ag[0]
				cg, ok := joiner.Mapping.GID.ToContainer(shared)
				if !ok {
					owner, joiner, shared = b.w, a.w, bg[0]
					cg, ok = joiner.Mapping.GID.ToContainer(shared)
				}
				if !ok {
					f.Fix = []Fix{{Description: fmt.Sprintf("%s and %s run in different user namespaces and neither's group is visible in the other's: run both with the same remap (or userns_mode: host) before sharing a directory", a.w.Name, b.w.Name)}}
				} else {
					f.Fix = []Fix{composeFix(joiner, fmt.Sprintf("make host gid %d (%s's group) the directory's group, setgid so new files keep it, with a default ACL granting the group rwX, and give %s that group (container gid %d)", shared, owner.Name, joiner.Name, cg),
						plan.ComposeEdit{GroupAdd: fmt.Sprint(cg)},
						plan.Chgrp{Path: src, GID: shared}, plan.Chmod{Path: src, Set: 0o2070},
						plan.Grant{Path: src, ID: shared, Group: true, Perm: "rwX", Default: true})}
				}
				out = append(out, f)
			}
		}
	}
	return out
}

func commonWritableGroup(n Node, a, b []uint32) bool {
	for _, g := range a {
		if !slices.Contains(b, g) {
			continue
		}
		probe := access.Cred{UID: 1<<32 - 2, GIDs: []uint32{g}}
		if access.Check(n.File, probe, acl.Write|acl.Execute).Allowed && n.Mode&0o002 == 0 {
			return true
		}
	}
	return false
}
