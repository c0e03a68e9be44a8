package identity

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    uint32
		wantErr string
	}{
		{"0", 0, ""},
		{"4294967294", 4294967294, ""},
		{"4294967295", 0, "beyond the largest id"},
		{"99999999999999999999", 0, "beyond the largest id"},
		{"-1", 0, "not a number"},
		{"", 0, "empty"},
		{"1e3", 0, "not a number"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseID(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseID(%q) error = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseID(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseSubID(t *testing.T) {
	in := "# comment\n\nvp:100000:65536\n  1000:1500:1  \nvp:300000:65536\n"
	got, err := ParseSubID(strings.NewReader(in), "/etc/subuid")
	if err != nil {
		t.Fatal(err)
	}
	want := []SubID{
		{Owner: "vp", Start: 100000, Count: 65536, Line: 3},
		{Owner: "1000", Start: 1500, Count: 1, Line: 4},
		{Owner: "vp", Start: 300000, Count: 65536, Line: 5},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("ParseSubID (-want +got):\n%s", d)
	}
}

func TestParseSubIDErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"two fields", "ok:1:1\nvp:100000\n", "/etc/subuid:2: want 3 fields name:start:count, found 2 (dockerd reads it as 0 for a missing number)"},
		{"bad start", "vp:abc:65536\n", `/etc/subuid:1: start: "abc" is not a number (dockerd reads it as 0)`},
		{"bad count", "vp:1:-5\n", `/etc/subuid:1: count: "-5" is not a number (dockerd reads it as 0)`},
		{"zero count", "vp:1:0\n", "/etc/subuid:1: count: 0: the range is empty"},
		{"past the id space", "vp:4294967290:10\n", "/etc/subuid:1: count: range 4294967290+10 runs past the largest id 4294967294"},
		{"start too big", "vp:4294967295:1\n", "/etc/subuid:1: start: 4294967295 is beyond the largest id"},
		{"empty name", ":1:1\n", "/etc/subuid:1: name: empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSubID(strings.NewReader(tc.in), "/etc/subuid")
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("error = %v, want a *LineError", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %q, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestParsePasswdGroup(t *testing.T) {
	users, err := ParsePasswd(strings.NewReader("root:x:0:0:root:/root:/bin/sh\n+::::::\nnode:x:1000:1000::/home/node:/bin/sh\n"), "passwd")
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := users.ByName("node"); !ok || u.UID != 1000 || u.Home != "/home/node" || u.Line != 3 {
		t.Fatalf("node = %+v, %v", u, ok)
	}
	if _, ok := users.ByUID(33); ok {
		t.Fatal("uid 33 found in a passwd without it")
	}
	groups, err := ParseGroup(strings.NewReader("root:x:0:\nshared:x:2000:node, www-data\nlonely:x:3000:\n"), "group")
	if err != nil {
		t.Fatal(err)
	}
	g, _ := groups.ByName("shared")
	if d := cmp.Diff([]string{"node", "www-data"}, g.Members); d != "" {
		t.Fatalf("members (-want +got):\n%s", d)
	}
	if g, ok := groups.ByGID(3000); !ok || g.Name != "lonely" || len(g.Members) != 0 {
		t.Fatalf("gid 3000 = %+v, %v", g, ok)
	}

	for _, tc := range []struct{ name, in, want string }{
		{"short passwd", "root:x:0:0\n", "passwd:1: want 7 fields"},
		{"bad uid", "a:x:1a:0:::\n", `passwd:1: uid: "1a" is not a number`},
		{"bad gid", "a:x:1:99999999999:::\n", "passwd:1: gid: 99999999999 is beyond the largest id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParsePasswd(strings.NewReader(tc.in), "passwd"); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %v, want prefix %q", err, tc.want)
			}
		})
	}
	if _, err := ParseGroup(strings.NewReader("g:x:abc:\n"), "group"); err == nil || !strings.HasPrefix(err.Error(), `group:1: gid: "abc"`) {
		t.Fatalf("group error = %v", err)
	}
}

func TestResolveUser(t *testing.T) {
	users, _ := ParsePasswd(strings.NewReader("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n"), "passwd")
	groups, _ := ParseGroup(strings.NewReader("root:x:0:\nwww-data:x:33:\nnode:x:1000:\nshared:x:2000:node,www-data\nlonely:x:3000:\n"), "group")
	for _, tc := range []struct {
		spec    string
		want    ExecUser
		wantErr string
	}{
		{spec: "", want: ExecUser{UID: 0, GID: 0, Home: "/root", Name: "root"}},
		{spec: "node", want: ExecUser{UID: 1000, GID: 1000, SGIDs: []uint32{2000}, Home: "/home/node", Name: "node"}},
		{spec: "1000", want: ExecUser{UID: 1000, GID: 1000, SGIDs: []uint32{2000}, Home: "/home/node", Name: "node"}},
		{spec: "1234", want: ExecUser{UID: 1234, GID: 0}},
		{spec: "1234:5678", want: ExecUser{UID: 1234, GID: 5678}},
		{spec: "node:lonely", want: ExecUser{UID: 1000, GID: 3000, Home: "/home/node", Name: "node"}},
		{spec: "33:33", want: ExecUser{UID: 33, GID: 33, Home: "/var/www", Name: "www-data"}},
		{spec: "nosuch", wantErr: "unable to find user nosuch: no matching entries in passwd file"},
		{spec: "node:nosuch", wantErr: "unable to find group nosuch: no matching entries in group file"},
		{spec: "3000000000", wantErr: "uids and gids must be in range 0-2147483647"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ResolveUser(tc.spec, users, groups)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}
	add, err := AdditionalGroups([]string{"shared", "999", "2000"}, groups)
	if err != nil || !cmp.Equal(add, []uint32{2000, 999}) {
		t.Fatalf("AdditionalGroups = %v, %v", add, err)
	}
	if _, err := AdditionalGroups([]string{"docker"}, groups); err == nil || err.Error() != "Unable to find group docker: no matching entries in group file" {
		t.Fatalf("AdditionalGroups(docker) error = %v", err)
	}
}
