package userns

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/volperm/volperm/internal/host"
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/plan"
	"github.com/volperm/volperm/internal/remap"
)

// Request is what to set up.
type Request struct {
	// User is the remap user: a name, a uid, or "default" (dockremap,
	// created when missing, as dockerd itself does).
	User string
	// HostUser, when set, asks for the "host user is container root"
	// layout of seeds 003 and 004: container uid 0 is this host user
	// (name or uid) and container gid 0 is HostGroup (name or gid),
	// by default the host user's primary group.
	HostUser  string
	HostGroup string
	// Size is the number of ids each file gives the remap user, container
	// ids 0..Size-1; 65536 when 0.
	Size uint32
	// CreateUser creates the remap user (and its group) when missing, as
	// a system account like dockerd's dockremap.
	CreateUser bool
}

// Change is one file the plan writes.
type Change struct {
	Path    string // on disk
	Host    string // as on the host
	Old     []byte
	New     []byte
	Existed bool
	Mode    fs.FileMode
	Owner   plan.Owner
	Why     string
}

// Plan is a remap setup: the files to write, and what dockerd will do
// with them.
type Plan struct {
	Request
	Spec     string        // the userns-remap value written
	User     string        // the remap user's name
	UID      *uint32       // nil when useradd will choose it
	HostRoot *idmap.Pair   // host-user layout: container root on the host
	Changes  []Change      // in write order: accounts, subuid, subgid, daemon.json
	UserAdd  []string      // the command that creates the user on a live host
	Mapping  idmap.Mapping // what containers will run with
	DataRoot string
	RootDir  string // <data-root>/<uid>.<gid>: dockerd's root with the remap
	Config   string // daemon.json, as on the host
	Notes    []string
	links    []string // files to change that are symbolic links
}

// DefaultSize is the range dockerd gives dockremap, and the least that
// images with ids up to 65535 (nobody, 65534) need.
const DefaultSize = idmap.DefaultRangeSize

// Make plans req on the system h.
func Make(h *Host, req Request) (*Plan, error) {
	if req.Size == 0 {
		req.Size = DefaultSize
	}
	if uint64(req.Size) > uint64(identity.MaxID)+1-idmap.DefaultRangeStart {
		return nil, fmt.Errorf("size %d: beyond the id space (at most %d ids fit above %d)", req.Size, uint64(identity.MaxID)+1-idmap.DefaultRangeStart, idmap.DefaultRangeStart)
	}
	if h.IDErr != nil {
		return nil, h.IDErr
	}
	if h.UnitErr != nil {
		return nil, h.UnitErr
	}
	if h.Config.Exists {
		// The file must be a JSON object volperm can edit; an empty one,
		// which dockerd before 23.0 refuses, is simply replaced.
		if _, err := host.ParseDaemonConfig(h.Config.Data, h.Config.Path); err != nil {
			return nil, err
		}
	}
	if h.Flags != nil {
		if v, ok := h.Flags.Flag("--userns-remap"); ok {
			return nil, fmt.Errorf("%s already passes --userns-remap=%s, and dockerd refuses to start when daemon.json sets it too: change it there, or remove it and run again", h.FlagsFrom, v)
		}
	}

	p := &Plan{Request: req, DataRoot: h.DataRoot, Config: h.Config.Host}
	name := req.User
	if name == "default" {
		name, req.CreateUser = remap.DefaultUser, true
	}
	if name == "" {
		return nil, errors.New("no remap user: give --user NAME (or default)")
	}
	if id, err := identity.ParseID(name); err == nil {
		u, ok := h.Users.ByUID(id)
		if !ok {
			return nil, fmt.Errorf("remap user %s: no user with uid %d in %s", name, id, h.Passwd.Path)
		}
		name = u.Name
	}
	p.User = name
	u, exists := h.Users.ByName(name)
	switch {
	case exists:
		p.UID = &u.UID
	case !req.CreateUser:
		return nil, fmt.Errorf("remap user %q does not exist in %s: give --create-user to create it as a system account (as dockerd does for \"default\"), or name an existing user", name, h.Passwd.Path)
	}

	// The group part of the spec: dockerd looks up a group called like the
	// user unless one is given; it only names the data root's owner.
	spec := name
	if req.User == "default" {
		spec = "default"
	}
	_, ownGroup := h.Groups.ByName(name)
	var rootGID *uint32
	if req.HostGroup != "" {
		if req.HostUser == "" {
			return nil, errors.New("--host-group needs --host-user")
		}
		g, ok := lookupGroup(h.Groups, req.HostGroup)
		if !ok {
			return nil, fmt.Errorf("host group %q does not exist in %s", req.HostGroup, h.Group.Path)
		}
		rootGID, spec = &g.GID, name+":"+g.Name
	} else if exists && !ownGroup {
		g, ok := h.Groups.ByGID(u.GID)
		if !ok {
			return nil, fmt.Errorf("remap user %s has no group called %s and its primary gid %d has no entry in %s: dockerd could not look up its group", name, name, u.GID, h.Group.Path)
		}
		spec = name + ":" + g.Name
		p.Notes = append(p.Notes, fmt.Sprintf("there is no group called %s, so the remap names %s's primary group %s (dockerd would otherwise refuse: \"Error during gid lookup for %q\")", name, name, g.Name, name))
	}
	if req.HostUser != "" {
		hu, ok := lookupUser(h.Users, req.HostUser)
		if !ok {
			return nil, fmt.Errorf("host user %q does not exist in %s", req.HostUser, h.Passwd.Path)
		}
		if hu.UID == 0 {
			return nil, errors.New("host user root: container root would be host root, which is what remapping exists to prevent")
		}
		if rootGID == nil {
			rootGID = &hu.GID
		}
		p.HostRoot = &idmap.Pair{UID: hu.UID, GID: *rootGID}
	}
	p.Spec = spec

	if !exists {
		if err := p.planAccount(h, ownGroup); err != nil {
			return nil, err
		}
	}
	if err := p.planRanges(h); err != nil {
		return nil, err
	}
	if h.Parsed == nil || h.Parsed.UsernsRemap != spec || !h.Config.Exists {
		data, err := SetRemap(h.Config.Data, h.Config.Path, spec)
		if err != nil {
			return nil, err
		}
		p.add(h.Config, data, fmt.Sprintf("set \"userns-remap\": %q, everything else kept", spec))
	}
	if len(p.links) > 0 {
		// A rename would replace the link with a file, behind the back of
		// whatever manages its target.
		return nil, fmt.Errorf("%s is a symbolic link: volperm replaces files by renaming over them, which would replace the link; point --daemon-config (or --root) at the real file", p.links[0])
	}
	p.RootDir = filepath.Join(p.DataRoot, p.Mapping.RootDirSuffix())
	return p, nil
}

func lookupUser(us identity.Users, s string) (identity.User, bool) {
	if id, err := identity.ParseID(s); err == nil {
		return us.ByUID(id)
	}
	return us.ByName(s)
}

func lookupGroup(gs identity.Groups, s string) (identity.Group, bool) {
	if id, err := identity.ParseID(s); err == nil {
		return gs.ByGID(id)
	}
	return gs.ByName(s)
}

// add records a change unless the content stays the same.
func (p *Plan) add(f file, data []byte, why string) {
	if f.Exists && bytes.Equal(f.Data, data) {
		return
	}
	if f.Link {
		p.links = append(p.links, f.Path)
	}
	p.Changes = append(p.Changes, Change{Path: f.Path, Host: f.Host, Old: f.Data, New: data, Existed: f.Exists, Mode: f.Mode, Owner: f.Owner, Why: why})
}

// planRanges plans /etc/subuid and /etc/subgid.
func (p *Plan) planRanges(h *Host) error {
	uidText := ""
	if p.UID != nil {
		uidText = uidString(*p.UID)
	}
	users, groups := map[uint32]string{}, map[uint32]string{}
	for _, u := range h.Users {
		users[u.UID] = u.Name
	}
	for _, g := range h.Groups {
		groups[g.GID] = g.Name
	}
	us := &side{f: h.SubUIDFile, lines: h.SubUID, user: p.User, uid: uidText, size: p.Size, account: users}
	gs := &side{f: h.SubGIDFile, lines: h.SubGID, user: p.User, uid: uidText, size: p.Size, account: groups}
	if p.HostRoot != nil {
		us.root, gs.root = &p.HostRoot.UID, &p.HostRoot.GID
	}
	whys := []string{us.decide(), gs.decide()}
	var start uint32
	if us.needsRange() || gs.needsRange() {
		n := p.Size
		if p.HostRoot != nil {
			n--
		}
		var err error
		if start, err = allocate([]*side{us, gs}, n); err != nil {
			return err
		}
	}
	for i, s := range []*side{us, gs} {
		data := s.edit(start)
		lines, err := identity.ParseSubID(bytes.NewReader(data), s.f.Path)
		if err != nil {
			return fmt.Errorf("planning %s: %w", s.f.Path, err)
		}
		uid := uint32(identity.MaxID)
		if p.UID != nil {
			uid = *p.UID
		}
		// Every daemon version must build the same map from the result.
		m, err := idmap.DockerMap(lines, s.f.Path, p.User, uid, idmap.Latest)
		if err != nil {
			return fmt.Errorf("planning %s: %w", s.f.Path, err)
		}
		if old, err := idmap.DockerMap(lines, s.f.Path, p.User, uid, Version20); err != nil || old.String() != m.String() {
			return fmt.Errorf("planning %s: daemons before 28.0 would read it differently", s.f.Path)
		}
		if i == 0 {
			p.Mapping.UID = m
		} else {
			p.Mapping.GID = m
		}
		why := map[string]string{
			"kept":     fmt.Sprintf("%s's lines already give this layout: unchanged", p.User),
			"unkeyed":  fmt.Sprintf("%s's lines keyed by uid are commented out: daemons before 28.0 would use them instead of the lines keyed by name", p.User),
			"inserted": fmt.Sprintf("container root's line goes in front of %s's existing range, which then carries container ids 1 and up", p.User),
			"added":    fmt.Sprintf("a free range for %s, overlapping no other owner's range and no real account", p.User),
			"replaced": fmt.Sprintf("%s's old lines are commented out (%s) and a free range added", p.User, whys[i]),
		}[s.action]
		p.add(s.f, data, why)
	}
	return nil
}
