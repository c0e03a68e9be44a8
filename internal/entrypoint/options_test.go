package entrypoint

import (
	"slices"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(options) bool
		wantErr string
	}{
		{name: "flags", args: []string{"--user", "node", "--match=/work", "--chown", "/a", "--chown", "/b", "--", "app", "-x"},
			check: func(o options) bool {
				return o.user == "node" && o.match == "/work" && slices.Equal(o.chown, []string{"/a", "/b"}) && slices.Equal(o.cmd, []string{"app", "-x"}) && o.socket == "auto"
			}},
		{name: "environment", args: []string{"--", "app"},
			env: map[string]string{"VOLPERM_USER": "node", "VOLPERM_UID": "1234", "VOLPERM_GID": "99", "VOLPERM_CHOWN": "/a:/b", "VOLPERM_DOCKER_SOCKET": "none", "VOLPERM_ALLOW_ROOT": "1"},
			check: func(o options) bool {
				return o.user == "node" && o.uid == 1234 && o.gid == 99 && slices.Equal(o.chown, []string{"/a", "/b"}) && o.socket == "none" && o.allowRoot
			}},
		{name: "flags win", args: []string{"--user", "app", "--chown", "/c", "--", "app"}, env: map[string]string{"VOLPERM_USER": "node", "VOLPERM_CHOWN": "/a"},
			check: func(o options) bool { return o.user == "app" && slices.Equal(o.chown, []string{"/c"}) }},
		{name: "no dashes", args: []string{"--user", "node", "id", "-u"},
			check: func(o options) bool { return slices.Equal(o.cmd, []string{"id", "-u"}) }},
		{name: "help", args: []string{"--help"}, check: func(o options) bool { return o.help }},
		{name: "no command", args: []string{"--user", "node"}, wantErr: "no command"},
		{name: "no user", args: []string{"--", "app"}, wantErr: "no user"},
		{name: "bad uid", args: []string{"--user", "n", "--uid", "-1", "--", "x"}, wantErr: `"-1" is not an id`},
		{name: "uid too big", args: []string{"--user", "n", "--uid", "4294967295", "--", "x"}, wantErr: "is not an id"},
		{name: "bad env id", args: []string{"--user", "n", "--", "x"}, env: map[string]string{"VOLPERM_GID": "staff"}, wantErr: "VOLPERM_GID"},
		{name: "bad env bool", args: []string{"--user", "n", "--", "x"}, env: map[string]string{"VOLPERM_ALLOW_ROOT": "yes please"}, wantErr: "VOLPERM_ALLOW_ROOT"},
		{name: "relative path", args: []string{"--user", "n", "--match", "work", "--", "x"}, wantErr: "must be absolute"},
		{name: "bad socket", args: []string{"--user", "n", "--docker-socket", "sock", "--", "x"}, wantErr: "--docker-socket"},
		{name: "unknown flag", args: []string{"--usr", "n", "--", "x"}, wantErr: "flag provided but not defined: -usr"},
		{name: "match with both ids", args: []string{"--user", "n", "--match", "/w", "--uid", "1", "--gid", "1", "--", "x"}, wantErr: "nothing to decide"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOptions(tc.args, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(o) {
				t.Errorf("options %+v", o)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	s, err := parseStatus([]byte("Name:\tsh\nUid:\t1234\t1234\t1234\t1234\nGid:\t1\t2\t3\t4\nGroups:\t1234 2000 \nCapPrm:\t0000000000000000\nCapEff:\t00000000a80425fb\nCapAmb:\t0000000000000000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.uid != [4]uint64{1234, 1234, 1234, 1234} || s.gid != [4]uint64{1, 2, 3, 4} || !slices.Equal(s.groups, []uint32{1234, 2000}) || s.capEff != 0xa80425fb {
		t.Errorf("%+v", s)
	}
	if _, err := parseStatus([]byte("Uid:\t1\n")); err == nil {
		t.Error("a status without capability lines parsed")
	}
}

func TestEtcFileKeepsBytes(t *testing.T) {
	for _, in := range []string{"", "a:x:1:1::/:/bin/sh", "a:x:1:1::/:/bin/sh\n", "# c\n\n+\na:x:1:1::/:/bin/sh\n"} {
		if got := string(parseEtc("p", []byte(in), 7).bytes()); got != in {
			t.Errorf("%q round-trips to %q", in, got)
		}
	}
	f := parseEtc("p", []byte("a:x:1:1::/:/bin/sh"), 7)
	f.add("b", "x", "2", "2", "", "/", "/bin/sh")
	if got := string(f.bytes()); got != "a:x:1:1::/:/bin/sh\nb:x:2:2::/:/bin/sh\n" {
		t.Errorf("appending to a file without a final newline: %q", got)
	}
}

// An /etc file is written back byte for byte whatever it holds, and
// lookups never panic on it.
func FuzzEtcFile(f *testing.F) {
	f.Add([]byte("root:x:0:0:root:/root:/bin/sh\n+\n#c\nbad\nnode:x:1000:1000::/home/node:/bin/sh"), uint32(1000))
	f.Fuzz(func(t *testing.T, data []byte, id uint32) {
		for _, n := range []int{4, 7} {
			e := parseEtc("p", data, n)
			if got := e.bytes(); string(got) != string(data) {
				t.Fatalf("%q round-trips to %q", data, got)
			}
			if i := e.byID(id, -1); i >= 0 {
				fs, ok := e.entry(i)
				if !ok || e.id(fs) != id {
					t.Fatalf("byID(%d) returned line %d: %q", id, i, e.lines[i])
				}
				e.set(i, 0, "renamed")
				if j := e.byName("renamed"); j < 0 || j > i {
					t.Fatalf("renamed entry not found")
				}
			}
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t1 2\nCapEff:\t0\nCapPrm:\t0\nCapAmb:\t0\n"))
	f.Fuzz(func(t *testing.T, data []byte) { _, _ = parseStatus(data) })
}
