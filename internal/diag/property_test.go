package diag

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/volperm/volperm/internal/access"
	"github.com/volperm/volperm/internal/acl"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/plan"
	"github.com/volperm/volperm/internal/workload"
)

// TestPlansNeverWiden generates random projects — users, remaps, bind
// sources of every owner, mode and ACL — and checks every step of every
// fix: no mode with o+w, and no owner or ACL entry for an id that is not
// one of the finding's workload's own host ids.
func TestPlansNeverWiden(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	remap := idmap.Mapping{UID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}, GID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}}
	pick := func(xs ...uint32) uint32 { return xs[r.IntN(len(xs))] }
	paths := []string{"/p/a", "/p/b", "/p/c", "/var/run/docker.sock", "/usr/x", "/etc/app"}
	steps := 0
	for iter := range 3000 {
		nodes := map[string]Node{}
		for _, p := range paths {
			if r.IntN(5) == 0 {
				continue // missing
			}
			n := Node{Exists: true, File: access.File{UID: pick(0, 33, 1000, 1234, 100000, 100033), GID: pick(0, 33, 105, 1000, 2000, 100000),
				Mode: uint32(r.IntN(0o10000)), Dir: p != "/var/run/docker.sock"}, Socket: p == "/var/run/docker.sock"}
			if r.IntN(3) == 0 {
				n.ACL = acl.ACL{{Tag: acl.UserObj, Perm: 7}, {Tag: acl.User, ID: pick(33, 1000, 4321), Perm: uint16(r.IntN(8))},
					{Tag: acl.GroupObj, Perm: 5}, {Tag: acl.Mask, Perm: uint16(r.IntN(8))}, {Tag: acl.Other, Perm: uint16(r.IntN(8))}}.Sorted()
			}
			nodes[p] = n
		}
		var ws []workload.Workload
		for i := range 1 + r.IntN(3) {
			spec := fmt.Sprintf("%d:%d", pick(0, 33, 1000, 1001), pick(0, 33, 1000, 2000))
			w := svc(fmt.Sprintf("s%d", i), spec)
			w.Origin.File = "/p/compose.yaml"
			if r.IntN(3) == 0 {
				w.GroupAddGIDs = []uint32{pick(105, 2000)}
			}
			if r.IntN(3) == 0 {
				w.Mapping, w.Remapped = remap, true
			}
			for range 1 + r.IntN(3) {
				m := bind(paths[r.IntN(len(paths))], fmt.Sprintf("/m%d", r.IntN(9)), r.IntN(3) == 0)
				m.CreateSource = r.IntN(4) != 0
				w.Mounts = append(w.Mounts, m)
			}
			ws = append(ws, w)
		}
		host := Host{Socket: "/var/run/docker.sock", HostUsers: map[uint32]string{1234: "alice"}}
		if n, ok := nodes["/var/run/docker.sock"]; ok {
			host.SocketNode = &n
		}
		in := &Input{Workloads: ws, Host: host, Stat: fakeStat(nodes)}
		byName := map[string]workload.Workload{}
		for _, w := range ws {
			byName[w.Name] = w
		}
		for _, f := range Run(in) {
			allowed := map[uint32]bool{}
			for _, w := range ws {
				if w.Name != f.Workload && f.ID != "VP402" {
					continue
				}
				uid, gids, _ := w.HostIDs()
				allowed[uid] = true
				for _, g := range gids {
					allowed[g] = true
				}
				for _, g := range w.ContainerGIDs() {
					allowed[g] = true // group_add values in compose are container gids
				}
				root := w.Mapping.RootPair()
				allowed[root.UID], allowed[root.GID] = true, true
			}
			for _, fix := range f.Fix {
				for _, s := range fix.Steps {
					steps++
					if err := checkStep(s, allowed, f, byName); err != nil {
						t.Fatalf("iteration %d, %s on %s: %v\nstep %#v\nworkloads %+v", iter, f.ID, f.Workload, err, s, ws)
					}
				}
			}
		}
	}
	if steps < 1000 {
		t.Fatalf("only %d steps generated: the generator does not reach the rules", steps)
	}
}

func checkStep(s plan.Step, allowed map[uint32]bool, f Finding, ws map[string]workload.Workload) error {
	id := func(x uint32) error {
		if !allowed[x] {
			return fmt.Errorf("id %d is not one of the workload's ids %v", x, keys(allowed))
		}
		return nil
	}
	switch s := s.(type) {
	case plan.Mkdir:
		if s.Mode&0o002 != 0 {
			return fmt.Errorf("mode %04o is world-writable", s.Mode)
		}
		return firstErr(id(s.UID), id(s.GID))
	case plan.Chmod:
		if s.Set&0o007 != 0 {
			return fmt.Errorf("chmod adds other bits %04o", s.Set)
		}
	case plan.Chown:
		return firstErr(id(s.UID), id(s.GID))
	case plan.Chgrp:
		return id(s.GID)
	case plan.Grant:
		return id(s.ID)
	case plan.ComposeEdit:
		if s.GroupAdd != "" && f.ID != "VP202" { // VP202 adds the socket's own gid, by design
			// VP402 adds the other workload's group: in the edited
			// service's namespace it must be a mapped gid, one of the ids
			// the finding names.
			var g uint32
			fmt.Sscan(s.GroupAdd, &g)
			joiner, ok := ws[s.Service]
			if !ok {
				return fmt.Errorf("compose edit for unknown service %s", s.Service)
			}
			h, mapped := joiner.Mapping.GID.ToHost(g)
			if !mapped {
				return fmt.Errorf("group_add %d has no host gid in %s's namespace", g, s.Service)
			}
			return id(h)
		}
	case plan.AppendLine:
	default:
		return fmt.Errorf("unknown step type %T", s)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func keys(m map[uint32]bool) []uint32 {
	var out []uint32
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
