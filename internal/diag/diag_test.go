package diag

import (
	"strings"
	"testing"

	"github.com/volperm/volperm/internal/access"
	"github.com/volperm/volperm/internal/host"
	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/remap"
	"github.com/volperm/volperm/internal/workload"
)

func fakeStat(nodes map[string]Node) Stat {
	return func(p string) (Node, error) { return nodes[p], nil }
}

func dirNode(uid, gid, mode uint32) Node {
	return Node{File: access.File{UID: uid, GID: gid, Mode: mode, Dir: true}, Exists: true}
}

func svc(name, user string, mounts ...workload.Mount) workload.Workload {
	u, err := identity.ResolveUser(user, nil, nil)
	if err != nil {
		panic(err)
	}
	return workload.Workload{Name: name, UserSpec: user, User: &u, Mapping: idmap.HostIdentity(), Mounts: mounts}
}

func bind(src, dst string, ro bool) workload.Mount {
	return workload.Mount{Type: "bind", Source: src, Target: dst, ReadOnly: ro, CreateSource: true}
}

func ids(fs []Finding) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.ID+":"+f.Severity.String())
	}
	return strings.Join(s, " ")
}

func TestRules(t *testing.T) {
	remap := idmap.Mapping{UID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}, GID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}}
	remapped := func(w workload.Workload) workload.Workload { w.Mapping, w.Remapped = remap, true; return w }
	sock := Node{File: access.File{UID: 0, GID: 105, Mode: 0o660}, Exists: true, Socket: true}
	for _, tc := range []struct {
		name  string
		ws    []workload.Workload
		nodes map[string]Node
		host  Host
		want  string
	}{
		{"seed 000 missing log dir", []workload.Workload{svc("app", "1000:1000", bind("/p/logs", "/logs", false))}, nil, Host{}, "VP101:error"},
		{"missing, read-only", []workload.Workload{svc("app", "1000:1000", bind("/p/logs", "/logs", true))}, nil, Host{}, "VP101:info"},
		{"missing, root", []workload.Workload{svc("app", "0", bind("/p/logs", "/logs", false))}, nil, Host{}, "VP101:info"},
		{"owned by the uid", []workload.Workload{svc("app", "1000", bind("/p/d", "/d", false))}, map[string]Node{"/p/d": dirNode(1000, 0, 0o755)}, Host{}, ""},
		{"root-owned 0755", []workload.Workload{svc("app", "1000", bind("/p/d", "/d", false))}, map[string]Node{"/p/d": dirNode(0, 0, 0o755)}, Host{}, "VP102:error"},
		{"root-owned 0700 ro", []workload.Workload{svc("app", "1000", bind("/p/d", "/d", true))}, map[string]Node{"/p/d": dirNode(0, 0, 0o700)}, Host{}, "VP103:error"},
		{"0777", []workload.Workload{svc("app", "1000", bind("/p/d", "/d", false))}, map[string]Node{"/p/d": dirNode(0, 0, 0o777)}, Host{}, "VP104:warning"},
		{"1777 sticky", []workload.Workload{svc("app", "1000", bind("/p/d", "/d", false))}, map[string]Node{"/p/d": dirNode(0, 0, 0o1777)}, Host{}, ""},
		{"remap, host-owned", []workload.Workload{remapped(svc("app", "0", bind("/p/d", "/d", false)))}, map[string]Node{"/p/d": dirNode(1000, 1000, 0o755)}, Host{}, "VP105:error"},
		{"remap, mapped owner", []workload.Workload{remapped(svc("app", "33", bind("/p/d", "/d", false)))}, map[string]Node{"/p/d": dirNode(100033, 100000, 0o755)}, Host{}, ""},
		{"socket, user lacks gid", []workload.Workload{svc("ci", "1000", bind("/var/run/docker.sock", "/var/run/docker.sock", false))}, map[string]Node{"/var/run/docker.sock": sock}, Host{Socket: "/var/run/docker.sock"}, "VP202:error VP201:warning"},
		{"socket, group_add", []workload.Workload{func() workload.Workload {
			w := svc("ci", "1000", bind("/run/docker.sock", "/var/run/docker.sock", false))
			w.GroupAddGIDs = []uint32{105}
			return w
		}()}, map[string]Node{"/run/docker.sock": sock}, Host{Socket: "/var/run/docker.sock"}, "VP201:warning"},
		{"socket under remap", []workload.Workload{remapped(svc("ci", "0", bind("/var/run/docker.sock", "/s", false)))}, map[string]Node{"/var/run/docker.sock": sock}, Host{}, "VP204:error VP201:warning"},
		{"chmod 666 socket", nil, nil, Host{Socket: "/var/run/docker.sock", SocketNode: &Node{File: access.File{GID: 105, Mode: 0o666}, Exists: true, Socket: true}}, "VP203:error"},
		{"root writes /bin", []workload.Workload{svc("app", "0", bind("/bin", "/host", false))}, map[string]Node{"/bin": dirNode(0, 0, 0o755)}, Host{}, "VP301:error"},
		{"root reads /etc", []workload.Workload{svc("app", "0", bind("/etc/app", "/c", true))}, map[string]Node{"/etc/app": dirNode(0, 0, 0o755)}, Host{}, ""},
		{"remapped root writes /usr/x", []workload.Workload{remapped(svc("app", "0", bind("/usr/x", "/x", false)))}, map[string]Node{"/usr/x": dirNode(100000, 100000, 0o755)}, Host{}, ""},
		{"shared dir, two uids", []workload.Workload{
			svc("a", "1000:1000", bind("/p/run", "/run", false)),
			svc("b", "33:33", bind("/p/run", "/run", false)),
		}, map[string]Node{"/p/run": dirNode(1000, 1000, 0o775)}, Host{}, "VP402:warning VP102:error"},
		{"shared dir, common group", []workload.Workload{
			svc("a", "1000:2000", bind("/p/run", "/run", false)),
			svc("b", "33:2000", bind("/p/run", "/run", false)),
		}, map[string]Node{"/p/run": dirNode(1000, 2000, 0o2775)}, Host{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Run(&Input{Workloads: tc.ws, Host: tc.host, Stat: fakeStat(tc.nodes)})
			if ids(got) != tc.want {
				t.Fatalf("findings %q, want %q\n%+v", ids(got), tc.want, got)
			}
			for _, f := range got {
				if f.Message == "" || len(f.Fix) == 0 {
					t.Errorf("%s has no message or fix", f.ID)
				}
				for _, fix := range f.Fix {
					if strings.Contains(fix.Shell, "777") || strings.Contains(fix.Shell, "666") || strings.Contains(fix.Shell, "o+w") {
						t.Errorf("%s suggests %q", f.ID, fix.Shell)
					}
				}
			}
		})
	}
}

func TestInterpolation(t *testing.T) {
	w := svc("app", "", bind("/x", "/x", true))
	w.UserRaw, w.UserSpec = "${UID}:${GID}", ":"
	got := Run(&Input{Workloads: []workload.Workload{w}, Stat: fakeStat(map[string]Node{"/x": dirNode(0, 0, 0o755)})})
	if ids(got) != "VP403:error" || !strings.Contains(got[0].Message, "UID and GID are not set") {
		t.Fatalf("%+v", got)
	}
	w.UserSpec = "1000:1000"
	if got := Run(&Input{Workloads: []workload.Workload{w}, Stat: fakeStat(map[string]Node{"/x": dirNode(0, 0, 0o755)})}); len(got) != 0 {
		t.Fatalf("%+v", got)
	}
}

func TestRuleIDsStable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Rules {
		if seen[r.ID] || !strings.HasPrefix(r.ID, "VP") || r.Name == "" || r.Summary == "" || r.Doc == "" {
			t.Errorf("rule %+v", r.ID)
		}
		seen[r.ID] = true
	}
}

func TestRemapSetupRules(t *testing.T) {
	sub := func(text string) []identity.SubID {
		l, err := identity.ParseSubID(strings.NewReader(text), "/etc/subuid")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	users, _ := identity.ParsePasswd(strings.NewReader("root:x:0:0::/root:/bin/sh\nmino:x:1000:1000::/home/mino:/bin/sh\nann:x:1001:1001::/home/ann:/bin/sh\nvp:x:990:990::/:/bin/false\n"), "passwd")
	for _, tc := range []struct {
		name  string
		setup RemapSetup
		want  string
	}{
		{"clean", RemapSetup{Spec: "vp", SubUID: sub("vp:100000:65536\n"), SubGID: sub("vp:100000:65536\n"), Users: users, Kernel: host.Kernel{UserNS: "y", MaxUserNamespaces: 15000}}, ""},
		{"no CONFIG_USER_NS", RemapSetup{Spec: "vp", Kernel: host.Kernel{UserNS: "n", ConfigFile: "/proc/config.gz", MaxUserNamespaces: 15000}}, "VP303:error"},
		{"max_user_namespaces 0", RemapSetup{Spec: "vp", Kernel: host.Kernel{UserNS: "y", MaxUserNamespaces: 0}}, "VP303:error"},
		{"no remap configured, no userns: fine", RemapSetup{Kernel: host.Kernel{UserNS: "n", MaxUserNamespaces: 0}}, ""},
		{"seed 004 host user first", RemapSetup{Spec: "mino", SubUID: sub("mino:1000:1\nmino:100000:65536\n"), Users: users, Kernel: host.Kernel{MaxUserNamespaces: 1}}, "VP304:info"},
		{"seed 003 covers another account", RemapSetup{Spec: "mino", SubUID: sub("mino:1000:65536\n"), Users: users, Kernel: host.Kernel{MaxUserNamespaces: 1}}, "VP304:warning VP304:info"},
		{"dockremap overlaps a user", RemapSetup{Spec: "vp", Account: remap.Account{User: "vp", UID: 990}, SubUID: sub("ann:100000:65536\nvp:100000:65536\n"), Users: users, Kernel: host.Kernel{MaxUserNamespaces: 1}}, "VP304:error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.setup
			got := Run(&Input{Host: Host{Remap: &s}, Stat: fakeStat(nil)})
			if ids(got) != tc.want {
				t.Fatalf("findings %q, want %q\n%+v", ids(got), tc.want, got)
			}
		})
	}
}
