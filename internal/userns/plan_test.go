package userns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/testenv"
)

const (
	passwd = "root:x:0:0:root:/root:/bin/bash\n# a comment\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n" +
		"vp:x:990:990::/nonexistent:/bin/false\nlone:x:991:1000::/nonexistent:/bin/false\nbig:x:200000:200000::/:/bin/sh\n"
	group = "root:x:0:\ndocker:x:982:alice\nalice:x:1000:\nvp:x:990:\n"
)

// sysWith builds a root directory holding files (host path -> text).
func sysWith(t *testing.T, files map[string]string) System {
	t.Helper()
	root := t.TempDir()
	testenv.WriteFiles(t, root, files)
	return System{Root: root}
}

func base(extra map[string]string) map[string]string {
	m := map[string]string{"/etc/passwd": passwd, "/etc/group": group}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func readHost(t *testing.T, sys System) *Host {
	t.Helper()
	h, err := Read(sys, ReadOptions{Version: Version20})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestMake(t *testing.T) {
	for _, tc := range []struct {
		name           string
		files          map[string]string
		req            Request
		spec           string
		subuid, subgid string // "" = unchanged
		uidMap, gidMap string
		daemonJSON     string // "" = unchanged
	}{
		{
			name: "default layout on empty files", files: base(nil), req: Request{User: "vp"},
			spec: "vp", subuid: "vp:100000:65536\n", subgid: "vp:100000:65536\n",
			uidMap: "0 100000 65536", gidMap: "0 100000 65536", daemonJSON: "{\n  \"userns-remap\": \"vp\"\n}\n",
		},
		{
			// Other owners' ranges and the real account 200000 are avoided,
			// in both files, so that the start is the same.
			name: "free range past others and accounts",
			files: base(map[string]string{"/etc/subuid": "# users\nalice:100000:65536\n\nbob:165536:1000\n", "/etc/subgid": "alice:100000:65536\ncarol:250000:10\n",
				"/etc/docker/daemon.json": "{\n    \"debug\": true\n}\n"}),
			req: Request{User: "vp"}, spec: "vp",
			subuid: "# users\nalice:100000:65536\n\nbob:165536:1000\nvp:250010:65536\n", subgid: "alice:100000:65536\ncarol:250000:10\nvp:250010:65536\n",
			uidMap: "0 250010 65536", gidMap: "0 250010 65536", daemonJSON: "{\n    \"debug\": true,\n    \"userns-remap\": \"vp\"\n}\n",
		},
		{
			name:  "clean lines kept",
			files: base(map[string]string{"/etc/subuid": "vp:500000:65536\n", "/etc/subgid": "vp:600000:70000\n", "/etc/docker/daemon.json": `{"userns-remap": "default"}`}),
			req:   Request{User: "vp"}, spec: "vp", uidMap: "0 500000 65536", gidMap: "0 600000 70000",
			daemonJSON: `{"userns-remap": "vp"}`,
		},
		{
			name:  "overlapping line replaced",
			files: base(map[string]string{"/etc/subuid": "alice:100000:65536\nvp:100000:65536\n", "/etc/subgid": "vp:100000:65536\n"}),
			req:   Request{User: "vp"}, spec: "vp",
			// 165536.. would cover the account big (200000).
			subuid: "alice:100000:65536\n" + Replaced + "vp:100000:65536\nvp:200001:65536\n", uidMap: "0 200001 65536", gidMap: "0 100000 65536",
			daemonJSON: "{\n  \"userns-remap\": \"vp\"\n}\n",
		},
		{
			// Daemons before 28.0 would use the uid line alone.
			name:  "uid line commented out",
			files: base(map[string]string{"/etc/subuid": "vp:100000:65536\n990:300000:65536\n", "/etc/subgid": "vp:100000:65536\n"}),
			req:   Request{User: "vp"}, spec: "vp",
			subuid: "vp:100000:65536\n" + Replaced + "990:300000:65536\n", uidMap: "0 100000 65536", gidMap: "0 100000 65536",
			daemonJSON: "{\n  \"userns-remap\": \"vp\"\n}\n",
		},
		{
			name:  "too small: replaced by the size asked",
			files: base(map[string]string{"/etc/subuid": "vp:100000:1000\n", "/etc/subgid": "vp:100000:65536\n"}),
			req:   Request{User: "vp"}, spec: "vp",
			subuid: Replaced + "vp:100000:1000\nvp:100000:65536\n", uidMap: "0 100000 65536", gidMap: "0 100000 65536",
			daemonJSON: "{\n  \"userns-remap\": \"vp\"\n}\n",
		},
		{
			// Seed 004 on a fresh host: alice is container root, the docker
			// group container root's group.
			name: "host user and group, fresh", files: base(nil),
			req: Request{User: "alice", HostUser: "alice", HostGroup: "docker"}, spec: "alice:docker",
			subuid: "alice:1000:1\nalice:100000:65535\n", subgid: "alice:982:1\nalice:100000:65535\n",
			uidMap: "0 1000 1\n1 100000 65535", gidMap: "0 982 1\n1 100000 65535",
			daemonJSON: "{\n  \"userns-remap\": \"alice:docker\"\n}\n",
		},
		{
			// Seed 004 exactly: the user's existing range carries ids 1..
			name:  "host user in front of the existing range",
			files: base(map[string]string{"/etc/subuid": "alice:100000:65536\n", "/etc/subgid": "alice:100000:65536\n"}),
			req:   Request{User: "alice", HostUser: "alice", HostGroup: "982"}, spec: "alice:docker",
			subuid: "alice:1000:1\nalice:100000:65536\n", subgid: "alice:982:1\nalice:100000:65536\n",
			uidMap: "0 1000 1\n1 100000 65536", gidMap: "0 982 1\n1 100000 65536",
			daemonJSON: "{\n  \"userns-remap\": \"alice:docker\"\n}\n",
		},
		{
			name: "host user without a group: its primary group",
			files: base(map[string]string{"/etc/subuid": "alice:1000:1\nalice:100000:65536\n", "/etc/subgid": "alice:1000:1\nalice:100000:65536\n",
				"/etc/docker/daemon.json": "{\"userns-remap\": \"alice\"}"}),
			req: Request{User: "alice", HostUser: "1000"}, spec: "alice",
			uidMap: "0 1000 1\n1 100000 65536", gidMap: "0 1000 1\n1 100000 65536",
		},
		{
			name: "remap user without its own group", files: base(nil),
			req: Request{User: "lone", Size: 100000}, spec: "lone:alice",
			subuid: "lone:100000:100000\n", subgid: "lone:100000:100000\n", uidMap: "0 100000 100000", gidMap: "0 100000 100000",
			daemonJSON: "{\n  \"userns-remap\": \"lone:alice\"\n}\n",
		},
		{
			name: "no trailing newline", files: base(map[string]string{"/etc/subuid": "alice:100000:65536", "/etc/subgid": "# none"}),
			req: Request{User: "vp"}, spec: "vp",
			subuid: "alice:100000:65536\nvp:200001:65536\n", subgid: "# none\nvp:200001:65536\n", uidMap: "0 200001 65536", gidMap: "0 200001 65536",
			daemonJSON: "{\n  \"userns-remap\": \"vp\"\n}\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := sysWith(t, tc.files)
			p, err := Make(readHost(t, sys), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if p.Spec != tc.spec {
				t.Errorf("spec %q, want %q", p.Spec, tc.spec)
			}
			got := map[string]string{}
			for _, c := range p.Changes {
				got[c.Host] = string(c.New)
			}
			want := map[string]string{}
			for path, text := range map[string]string{"/etc/subuid": tc.subuid, "/etc/subgid": tc.subgid, "/etc/docker/daemon.json": tc.daemonJSON} {
				if text != "" {
					want[path] = text
				}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("changed files (-want +got):\n%s", d)
			}
			if m := flat(p.Mapping.UID); m != tc.uidMap {
				t.Errorf("uid map %q, want %q", m, tc.uidMap)
			}
			if m := flat(p.Mapping.GID); m != tc.gidMap {
				t.Errorf("gid map %q, want %q", m, tc.gidMap)
			}
			// Applying the plan and planning again changes nothing.
			if _, err := Apply(sys, p, DefaultOps()); err != nil {
				t.Fatal(err)
			}
			again, err := Make(readHost(t, sys), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Changes) != 0 {
				t.Errorf("a second plan changes %s", again.Changes[0].Host)
			}
		})
	}
}

// flat renders a map as "C H N" lines.
func flat(m idmap.Map) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(m.String()), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}

func TestMakeCreatesUser(t *testing.T) {
	sys := sysWith(t, base(map[string]string{"/etc/shadow": "root:*:19000:0:99999:7:::\n", "/etc/gshadow": "root:*::\n",
		"/etc/login.defs": "# defaults\nSYS_UID_MIN 100\nSYS_UID_MAX 995\n"}))
	p, err := Make(readHost(t, sys), Request{User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec != "default" || p.User != "dockremap" || p.UID == nil || *p.UID != 995 {
		t.Fatalf("spec %q user %s uid %v", p.Spec, p.User, *p.UID)
	}
	got := map[string]string{}
	for _, c := range p.Changes {
		got[c.Host] = string(c.New)
	}
	for path, line := range map[string]string{
		"/etc/passwd":  "dockremap:x:995:995::/nonexistent:/bin/false\n",
		"/etc/group":   "dockremap:x:995:\n",
		"/etc/shadow":  "dockremap:!:::::::\n",
		"/etc/gshadow": "dockremap:!::\n",
		"/etc/subuid":  "dockremap:100000:65536\n",
	} {
		if !strings.HasSuffix(got[path], line) {
			t.Errorf("%s: %q does not end with %q", path, got[path], line)
		}
	}
	// A live system leaves the account to useradd.
	h := readHost(t, sys)
	h.Sys = System{Root: "/"}
	p, err = Make(h, Request{User: "vpnew", CreateUser: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := "useradd --system --no-create-home --shell /bin/false -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 --user-group vpnew"; strings.Join(p.UserAdd, " ") != want || p.UID != nil {
		t.Errorf("useradd %q, uid %v", p.UserAdd, p.UID)
	}
}

// TestMakeRefuses: bad input is one line naming the file, line or field,
// and no plan.
func TestMakeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		req   Request
		want  string
		link  string // make this file a symbolic link to a copy of itself
	}{
		{"unknown user", base(nil), Request{User: "nosuch"}, `remap user "nosuch" does not exist in ROOT/etc/passwd: give --create-user`, ""},
		{"unknown uid", base(nil), Request{User: "4242"}, "remap user 4242: no user with uid 4242 in ROOT/etc/passwd", ""},
		{"unknown host user", base(nil), Request{User: "vp", HostUser: "nosuch"}, `host user "nosuch" does not exist in ROOT/etc/passwd`, ""},
		{"unknown host group", base(nil), Request{User: "vp", HostUser: "alice", HostGroup: "nosuch"}, `host group "nosuch" does not exist in ROOT/etc/group`, ""},
		{"host user root", base(nil), Request{User: "vp", HostUser: "root"}, "host user root: container root would be host root", ""},
		{"size beyond the id space", base(nil), Request{User: "vp", Size: 1<<32 - 1}, "size 4294967295: beyond the id space", ""},
		{"no room", base(map[string]string{"/etc/subuid": "x:100000:4294000000\n"}), Request{User: "vp", Size: 10_000_000}, "no free range of 10000000 ids at or above 100000", ""},
		{"daemon.json an array", base(map[string]string{"/etc/docker/daemon.json": `["userns-remap"]`}), Request{User: "vp"}, "ROOT/etc/docker/daemon.json: the daemon configuration must be a JSON object, found an array", ""},
		{"daemon.json broken", base(map[string]string{"/etc/docker/daemon.json": "{\n  \"debug\": true,\n}\n"}), Request{User: "vp"}, "ROOT/etc/docker/daemon.json:3:1: invalid JSON", ""},
		{"subuid line broken", base(map[string]string{"/etc/subuid": "alice:100000:65536\nbob:abc:65536\n"}), Request{User: "vp"}, `ROOT/etc/subuid:2: start: "abc" is not a number`, ""},
		{"passwd line broken", base(map[string]string{"/etc/passwd": "root:x:0:0::/root\n"}), Request{User: "vp"}, "ROOT/etc/passwd:1: want 7 fields", ""},
		{"flag in the unit", base(map[string]string{"/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd --userns-remap=mino\n"}), Request{User: "vp"},
			"ExecStart of /lib/systemd/system/docker.service already passes --userns-remap=mino", ""},
		{"daemon.json a symbolic link", base(map[string]string{"/etc/docker/daemon.json": "{}"}), Request{User: "vp"},
			"ROOT/etc/docker/daemon.json is a symbolic link", "/etc/docker/daemon.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := sysWith(t, tc.files)
			if tc.link != "" {
				p := sys.Path(tc.link)
				if err := os.Rename(p, p+".real"); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Base(p)+".real", p); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Make(readHost(t, sys), tc.req)
			want := strings.ReplaceAll(tc.want, "ROOT", sys.Root)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error %v, want prefix %q", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
		})
	}
}
