package idmap

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/volperm/volperm/internal/identity"
)

func sub(t *testing.T, text string) []identity.SubID {
	t.Helper()
	lines, err := identity.ParseSubID(strings.NewReader(text), "/etc/subuid")
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

var v20 = Version{20, 10, 24}

func TestDockerMapLayouts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		subuid  string
		user    string
		uid     uint32
		version Version
		want    Map
	}{
		{
			name: "one range", subuid: "vp:100000:65536\n", user: "vp", uid: 999, version: v20,
			want: Map{{0, 100000, 65536}},
		},
		{
			// Seed 003: "mino:1000:65536" maps container 0..65535 to host
			// 1000..66535 (not 1000..65536 as the post's table says).
			name: "seed 003 host user is root", subuid: "mino:1000:65536\n", user: "mino", uid: 1000, version: v20,
			want: Map{{0, 1000, 65536}},
		},
		{
			// Seed 004: the host user first, then a full range: container 0
			// is host 1000, container 1.. is 100000...
			name: "seed 004 two ranges", subuid: "jenselme:1000:1\njenselme:100000:65536\n", user: "jenselme", uid: 1000, version: v20,
			want: Map{{0, 1000, 1}, {1, 100000, 65536}},
		},
		{
			name: "reverse order is not sorted", subuid: "u:300000:65536\nu:1500:1\n", user: "u", uid: 990, version: v20,
			want: Map{{0, 300000, 65536}, {65536, 1500, 1}},
		},
		{
			name: "other users ignored", subuid: "a:100000:65536\nu:165536:65536\nb:231072:65536\n", user: "u", uid: 990, version: v20,
			want: Map{{0, 165536, 65536}},
		},
		{
			name: "20.10 uid lines win over name lines", subuid: "u:100000:65536\n990:500000:10\n", user: "u", uid: 990, version: v20,
			want: Map{{0, 500000, 10}},
		},
		{
			name: "23-27 uid lines only when present", subuid: "990:500000:10\nu:100000:65536\n", user: "u", uid: 990, version: Version{27, 5, 1},
			want: Map{{0, 500000, 10}},
		},
		{
			name: "28+ file order by name or uid", subuid: "990:500000:10\nu:100000:65536\n", user: "u", uid: 990, version: Version{28, 0, 0},
			want: Map{{0, 500000, 10}, {10, 100000, 65536}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DockerMap(sub(t, tc.subuid), "/etc/subuid", tc.user, tc.uid, tc.version)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("map (-want +got):\n%s", d)
			}
		})
	}
}

func TestTranslate(t *testing.T) {
	m := Mapping{UID: Map{{0, 1000, 1}, {1, 100000, 65536}}, GID: Map{{0, 982, 1}, {1, 100000, 65536}}}
	for _, tc := range []struct {
		c, h Pair
		ok   bool
	}{
		{Pair{0, 0}, Pair{1000, 982}, true},
		{Pair{33, 33}, Pair{100032, 100032}, true},
		{Pair{65536, 65536}, Pair{165535, 165535}, true},
		{Pair{65537, 0}, Pair{Overflow, 982}, false},
	} {
		h, ok := m.ToHost(tc.c)
		if h != tc.h || ok != tc.ok {
			t.Errorf("ToHost(%v) = %v, %v; want %v, %v", tc.c, h, ok, tc.h, tc.ok)
		}
		if tc.ok {
			if c, ok := m.ToContainer(tc.h); c != tc.c || !ok {
				t.Errorf("ToContainer(%v) = %v, %v; want %v", tc.h, c, ok, tc.c)
			}
		}
	}
	if c, ok := m.ToContainer(Pair{5, 5}); ok || c != (Pair{Overflow, Overflow}) {
		t.Errorf("unmapped host id: got %v, %v", c, ok)
	}
	if got := m.RootDirSuffix(); got != "1000.982" {
		t.Errorf("RootDirSuffix = %q", got)
	}
	if !HostIdentity().IsIdentity() || m.IsIdentity() {
		t.Error("IsIdentity wrong")
	}
	if h, ok := Identity().ToHost(identity.MaxID); !ok || h != identity.MaxID {
		t.Errorf("identity of the last id = %d, %v", h, ok)
	}
}

func TestNoRanges(t *testing.T) {
	lines := sub(t, "other:100000:65536\n")
	for _, tc := range []struct {
		file    string
		version Version
		want    string
	}{
		{"/etc/subuid", v20, `Can't create ID mappings: no subuid ranges found for user "vp"`},
		{"/etc/subgid", v20, `Can't create ID mappings: no subgid ranges found for user "vp"`},
		{"/etc/subgid", Version{28, 5, 2}, `Can't create ID mappings: no subuid ranges found for user "vp"`},
		{"/etc/subgid", Version{29, 7, 2}, `error creating ID mappings: no subuid ranges found for user "vp"`},
	} {
		_, err := DockerMap(lines, tc.file, "vp", 990, tc.version)
		var nr *NoRangesError
		if !errors.As(err, &nr) {
			t.Fatalf("error = %v", err)
		}
		if got := nr.DaemonMessage(); got != tc.want {
			t.Errorf("%s %s: message %q, want %q", tc.file, tc.version, got, tc.want)
		}
		if nr.Suggest != "vp:165536:65536" {
			t.Errorf("suggested line %q", nr.Suggest)
		}
		if !strings.Contains(err.Error(), tc.file) {
			t.Errorf("error %q does not name %s", err, tc.file)
		}
	}
}

func TestFreeRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
	}{
		{"", 100000},
		{"a:100000:65536\n", 165536},
		{"a:165536:65536\nb:100000:65536\n", 231072},
		{"a:100000:10\nb:200000:65536\n", 100010},
		{"a:1000:1\n", 100000},
	} {
		var lines []identity.SubID
		if tc.in != "" {
			lines = sub(t, tc.in)
		}
		if got, ok := FreeRange(lines, 65536); !ok || got != tc.want {
			t.Errorf("FreeRange(%q) = %d, %v; want %d", tc.in, got, ok, tc.want)
		}
	}
}

func TestOverlapRejected(t *testing.T) {
	_, err := DockerMap(sub(t, "u:100000:65536\nu:100010:5\n"), "/etc/subuid", "u", 1, v20)
	if err == nil || !strings.Contains(err.Error(), "overlap on the host side") {
		t.Fatalf("error = %v", err)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{
		"20.10.24+dfsg1": {20, 10, 24}, "28.2.2": {28, 2, 2}, "docker-v29.7.2": {29, 7, 2}, "v27.5": {27, 5, 0},
	} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseVersion("latest"); err == nil {
		t.Error("ParseVersion(latest) succeeded")
	}
}

func TestParseProc(t *testing.T) {
	m, err := ParseProc(strings.NewReader("         0     100000      65536\n     65536       1500          1\n"), "uid_map")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Map{{0, 100000, 65536}, {65536, 1500, 1}}, m); d != "" {
		t.Fatal(d)
	}
	init, err := ParseProc(strings.NewReader("0 0 4294967295\n"), "uid_map")
	if err != nil || !init.IsIdentity() {
		t.Fatalf("initial namespace map = %v, %v", init, err)
	}
	if _, err := ParseProc(strings.NewReader("0 x 1\n"), "uid_map"); err == nil || !strings.HasPrefix(err.Error(), "uid_map:1: outside:") {
		t.Fatalf("error = %v", err)
	}
	if _, err := ParseProc(strings.NewReader("0 100 10\n5 500 10\n"), "uid_map"); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("error = %v", err)
	}
}
