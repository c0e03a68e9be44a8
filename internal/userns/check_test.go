package userns

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/volperm/volperm/internal/diag"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/remap"
	"github.com/volperm/volperm/internal/testenv"
)

// daemonMessages are the lines dockerd prints for the setup's refusals.
func daemonMessages(a *Assessment) []string {
	var out []string
	var walk func(err error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if m, ok := err.(interface{ DaemonMessage() string }); ok {
			out = append(out, m.DaemonMessage())
		}
	}
	walk(a.Setup.Err)
	return out
}

func findingIDs(a *Assessment) string {
	var ids []string
	for _, f := range diag.Run(&diag.Input{Host: diag.Host{Remap: a.Setup}}) {
		ids = append(ids, f.ID+":"+f.Severity.String())
	}
	return strings.Join(ids, " ")
}

func TestAssess(t *testing.T) {
	const cfg = "/etc/docker/daemon.json"
	for _, tc := range []struct {
		name     string
		files    map[string]string
		version  idmap.Version
		running  *Daemon
		starts   bool
		messages []string // dockerd's refusals, in order
		findings string
		rootDir  string
	}{
		{name: "nothing configured", files: base(nil), starts: true, rootDir: "/var/lib/docker"},
		{
			name:   "clean default layout",
			files:  base(map[string]string{cfg: `{"userns-remap": "vp"}`, "/etc/subuid": "vp:100000:65536\n", "/etc/subgid": "vp:100000:65536\n"}),
			starts: true, rootDir: "/var/lib/docker/100000.100000",
		},
		{
			name:  "no such user, no lines",
			files: base(map[string]string{cfg: `{"userns-remap": "nosuch"}`, "/etc/subuid": "", "/etc/subgid": ""}),
			messages: []string{`Error during uid lookup for "nosuch": getent unable to find entry "nosuch" in passwd database`,
				`Can't create ID mappings: no subuid ranges found for user "nosuch"`, `Can't create ID mappings: no subgid ranges found for user "nosuch"`},
			findings: "VP302:error VP302:error VP302:error",
		},
		{
			name:     "no subgid line, as dockerd 29.7 words it",
			files:    base(map[string]string{cfg: `{"userns-remap": "vp"}`, "/etc/subuid": "vp:100000:65536\n", "/etc/subgid": "alice:100000:65536\n"}),
			version:  idmap.Latest,
			messages: []string{`error creating ID mappings: no subuid ranges found for user "vp"`}, findings: "VP302:error",
		},
		{
			name:     "no subuid file",
			files:    base(map[string]string{cfg: `{"userns-remap": "vp"}`, "/etc/subgid": "vp:100000:65536\n"}),
			messages: []string{"Can't create ID mappings: open /etc/subuid: no such file or directory"}, findings: "VP302:error",
		},
		{
			name:     "empty daemon.json, dockerd 20.10",
			files:    base(map[string]string{cfg: ""}),
			messages: []string{"unable to configure the Docker daemon with file /etc/docker/daemon.json: EOF"}, findings: "VP302:error",
		},
		{name: "empty daemon.json, dockerd 29", files: base(map[string]string{cfg: " \n"}), version: idmap.Latest, starts: true, rootDir: "/var/lib/docker"},
		{
			name: "flag and file",
			files: base(map[string]string{cfg: `{"userns-remap": "vp"}`, "/etc/subuid": "vp:100000:65536\n", "/etc/subgid": "vp:100000:65536\n",
				"/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd -H fd:// --userns-remap=vp\n"}),
			messages: []string{"unable to configure the Docker daemon with file /etc/docker/daemon.json: the following directives are specified both as a flag and in the configuration file: userns-remap: (from flag: vp, from file: vp)"},
			findings: "VP302:error", rootDir: "/var/lib/docker/100000.100000",
		},
		{
			name: "a missing --config-file",
			files: base(map[string]string{"/etc/subuid": "vp:100000:65536\n", "/etc/subgid": "vp:100000:65536\n",
				"/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd --config-file /etc/docker/other.json --userns-remap=vp\n"}),
			messages: []string{"unable to configure the Docker daemon with file /etc/docker/other.json: open /etc/docker/other.json: no such file or directory"},
			findings: "VP302:error", rootDir: "/var/lib/docker/100000.100000",
		},
		{
			name:     "invalid spec",
			files:    base(map[string]string{cfg: `{"userns-remap": "a:b:c"}`}),
			messages: []string{`Invalid user/group specification in --userns-remap: "a:b:c"`}, findings: "VP302:error",
		},
		{
			name:   "default before dockremap exists",
			files:  base(map[string]string{cfg: `{"userns-remap": "default"}`, "/etc/subuid": "alice:100000:65536\n", "/etc/subgid": ""}),
			starts: true, rootDir: "/var/lib/docker/165536.100000",
		},
		{name: "root remapped onto itself", files: base(map[string]string{cfg: `{"userns-remap": "root"}`}), starts: true, rootDir: "/var/lib/docker"},
		{
			name:   "small range",
			files:  base(map[string]string{cfg: `{"userns-remap": "vp"}`, "/etc/subuid": "vp:100000:1000\n", "/etc/subgid": "vp:100000:65536\n"}),
			starts: true, findings: "VP305:warning", rootDir: "/var/lib/docker/100000.100000",
		},
		{
			// Seed 004: alice is container root, with the docker group.
			name: "host user layout",
			files: base(map[string]string{cfg: `{"userns-remap": "alice:docker"}`, "/etc/subuid": "alice:1000:1\nalice:100000:65535\n",
				"/etc/subgid": "alice:982:1\nalice:100000:65535\n"}),
			starts: true, findings: "VP304:info", rootDir: "/var/lib/docker/1000.982",
		},
		{
			name:   "not restarted yet",
			files:  base(map[string]string{cfg: `{"userns-remap": "vp"}`, "/etc/subuid": "vp:100000:65536\n", "/etc/subgid": "vp:100000:65536\n"}),
			starts: true, running: &Daemon{RootDir: "/var/lib/docker"}, findings: "VP306:warning", rootDir: "/var/lib/docker/100000.100000",
		},
		{
			name:   "restarted",
			files:  base(map[string]string{cfg: `{"userns-remap": "vp"}`, "/etc/subuid": "vp:100000:65536\n", "/etc/subgid": "vp:100000:65536\n"}),
			starts: true, running: &Daemon{Userns: true, RootDir: "/var/lib/docker/100000.100000"}, rootDir: "/var/lib/docker/100000.100000",
		},
		{
			name:   "reverted, not restarted",
			files:  base(nil),
			starts: true, running: &Daemon{Userns: true, RootDir: "/var/lib/docker/100000.100000"}, findings: "VP306:warning", rootDir: "/var/lib/docker",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := sysWith(t, tc.files)
			v := tc.version
			if v == (idmap.Version{}) {
				v = idmap.Version{Major: 20, Minor: 10, Patch: 24}
			}
			h, err := Read(sys, ReadOptions{Version: v})
			if err != nil {
				t.Fatal(err)
			}
			a := Assess(h, tc.running)
			if a.Starts != tc.starts {
				t.Errorf("starts %v, want %v (%v)", a.Starts, tc.starts, a.Setup.Err)
			}
			if got := strings.Join(daemonMessages(a), "\n"); got != strings.Join(tc.messages, "\n") {
				t.Errorf("dockerd's messages:\n%s\nwant:\n%s", got, strings.Join(tc.messages, "\n"))
			}
			if got := findingIDs(a); got != tc.findings {
				t.Errorf("findings %q, want %q", got, tc.findings)
			}
			if a.RootDir != tc.rootDir {
				t.Errorf("root dir %q, want %q", a.RootDir, tc.rootDir)
			}
		})
	}
}

// TestAssessGraphRoot: a directory above the data root that the remapped
// root cannot search stops dockerd (the text observed on 20.10.24).
func TestAssessGraphRoot(t *testing.T) {
	sys := sysWith(t, base(map[string]string{"/etc/docker/daemon.json": `{"userns-remap": "vp", "data-root": "/srv/private/docker"}`,
		"/etc/subuid": "vp:100000:65536\n", "/etc/subgid": "vp:100000:65536\n"}))
	if err := os.MkdirAll(sys.Path("/srv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(sys.Path("/srv/private"), 0o700); err != nil {
		t.Fatal(err)
	}
	h, err := Read(sys, ReadOptions{Version: Version20})
	if err != nil {
		t.Fatal(err)
	}
	a := Assess(h, nil)
	want := "a subdirectory in your graphroot path (/srv/private/docker/100000.100000) restricts access to the remapped root uid/gid; please fix by allowing 'o+x' permissions on existing directories"
	if a.Starts || strings.Join(daemonMessages(a), "") != want {
		t.Fatalf("starts %v, messages %q", a.Starts, daemonMessages(a))
	}
	var rf *remap.Refused
	if !errors.As(a.Setup.Err, &rf) || !strings.Contains(rf.Fix, "chmod o+x "+sys.Path("/srv/private")) {
		t.Errorf("fix %+v", rf)
	}
	// Owned by the remapped root's group and searchable by it: fine.
	testenv.NeedRoot(t)
	if err := os.Chown(sys.Path("/srv/private"), 0, 100000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sys.Path("/srv/private"), 0o710); err != nil {
		t.Fatal(err)
	}
	if a := Assess(h, nil); !a.Starts {
		t.Errorf("a group-searchable directory refused: %v", a.Setup.Err)
	}
}
