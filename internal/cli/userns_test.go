package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/volperm/volperm/internal/diag"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/testenv"
)

// hostImage copies this host's account and subordinate id files into a
// new root directory, with a daemon.json that has keys of its own, as
// userns apply --root would find a host prepared offline.
func hostImage(t *testing.T, subExtra string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc/docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"passwd", "group", "shadow", "gshadow", "subuid", "subgid"} {
		data, err := os.ReadFile("/etc/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(f, "sub") {
			data = append(data, subExtra...)
		}
		if err := os.WriteFile(filepath.Join(dir, "etc", f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := "{\n  \"log-level\": \"info\",\n  \"log-opts\": {\"max-size\": \"10m\"}\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "etc/docker/daemon.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// treeOf is every file under dir with its mode, for byte-identity checks.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		out[strings.TrimPrefix(p, dir)] = fmt.Sprintf("%v %q", fi.Mode(), data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func linesOf(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

type planJSON struct {
	Spec    string      `json:"spec"`
	UIDMap  idmap.Map   `json:"uid_map"`
	GIDMap  idmap.Map   `json:"gid_map"`
	RootDir string      `json:"root_dir"`
	Applied *struct{}   `json:"applied"`
	Host    *idmap.Pair `json:"host_root"`
}

type checkJSON struct {
	Starts   bool           `json:"starts"`
	RootDir  string         `json:"root_dir"`
	Findings []diag.Finding `json:"findings"`
	Running  *struct {
		Userns  bool   `json:"userns"`
		RootDir string `json:"root_dir"`
		Matches bool   `json:"matches"`
	} `json:"running"`
}

// TestUsernsApplyStartsDaemon is the contract of userns apply: for the
// default layout and seed 004's host-user layout, the files it writes
// under --root make a real dockerd (started with them: the subuid and
// subgid lines installed in /etc, the daemon.json as its --config-file,
// no --userns-remap flag) start and remap exactly as the plan's table
// says; userns check then finds the running daemon as planned; revert
// leaves every file byte for byte as before.
func TestUsernsApplyStartsDaemon(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedDocker(t)
	for _, tc := range []struct {
		name      string
		user      string
		group     string   // host group for --host-group
		subExtra  string   // lines the user already has (%d: none)
		args      []string // beyond --user
		probe     []string
		wantLines int // lines of the user in /etc/subuid afterwards
	}{
		{name: "default layout", user: "vpuserns", probe: []string{"0:0", "33:33", "1000:1000", "65535:65535"}, wantLines: 1},
		{
			// Seed 004: the host user is container root, the docker-like
			// group its group; its existing range carries ids 1 and up.
			name: "host user and group", user: "vphost", group: "vpdock", subExtra: "vphost:300000:65536\n",
			args:  []string{"--host-user", "vphost", "--host-group", "vpdock"},
			probe: []string{"0:0", "33:33", "1000:1000", "65536:65536"}, wantLines: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid := testenv.EnsureUser(t, tc.user)
			var gid uint32
			if tc.group != "" {
				gid = testenv.EnsureGroup(t, tc.group)
			}
			root := hostImage(t, tc.subExtra)
			before := treeOf(t, filepath.Join(root, "etc"))

			args := append([]string{"userns", "apply", "--root", root, "--user", tc.user, "-o", "json"}, tc.args...)
			stdout, stderr, code := runCLI(t, "unix:///nonexistent.sock", args...)
			if code != 0 {
				t.Fatalf("userns apply: exit %d: %s", code, stderr)
			}
			var p planJSON
			if err := json.Unmarshal([]byte(stdout), &p); err != nil || p.Applied == nil {
				t.Fatalf("apply output %q: %v", stdout, err)
			}
			mapping := idmap.Mapping{UID: p.UIDMap, GID: p.GIDMap}
			if tc.group != "" {
				if r := mapping.RootPair(); r != (idmap.Pair{UID: uid, GID: gid}) {
					t.Fatalf("the plan makes container root host %d:%d, want the host user and group %d:%d", r.UID, r.GID, uid, gid)
				}
			}
			subuid, subgid := linesOf(t, filepath.Join(root, "etc/subuid")), linesOf(t, filepath.Join(root, "etc/subgid"))
			n := 0
			for _, l := range subuid {
				if strings.HasPrefix(l, tc.user+":") {
					n++
				}
			}
			if n != tc.wantLines {
				t.Errorf("%d lines of %s in the new subuid, want %d: %q", n, tc.user, tc.wantLines, subuid)
			}

			// The check of the prepared files says dockerd will start.
			stdout, stderr, code = runCLI(t, "unix:///nonexistent.sock", "userns", "check", "--root", root, "-o", "json")
			var c checkJSON
			if err := json.Unmarshal([]byte(stdout), &c); err != nil || code != 0 || !c.Starts || c.RootDir != p.RootDir {
				t.Fatalf("userns check --root: exit %d, %+v (%v): %s", code, c, err, stderr)
			}

			cfg := filepath.Join(root, "etc/docker/daemon.json")
			d := testenv.RemapDaemon(t, testenv.Layout{User: tc.user, Group: tc.group, SubUID: subuid, SubGID: subgid, Config: cfg})
			img := testenv.Image(t, d)
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o1777); err != nil {
				t.Fatal(err)
			}
			got := d.CreateAs(t, img, dir, tc.probe)
			for _, spec := range tc.probe {
				cp, err := parseIDArg(spec)
				if err != nil {
					t.Fatal(err)
				}
				want, ok := mapping.ToHost(cp)
				if !ok || got[spec] != (testenv.Owner{UID: want.UID, GID: want.GID}) {
					t.Errorf("container %s created a file owned by host %v; the plan's table says %d:%d", spec, got[spec], want.UID, want.GID)
				}
			}
			info, err := d.Client.Info(context.Background(), client.InfoOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(info.Info.DockerRootDir) != filepath.Base(p.RootDir) {
				t.Errorf("DockerRootDir %s, the plan said <data-root>/%s", info.Info.DockerRootDir, filepath.Base(p.RootDir))
			}

			// After the "restart", check verifies the running daemon.
			stdout, stderr, code = runCLI(t, d.Host, "userns", "check", "-o", "json")
			c = checkJSON{}
			if err := json.Unmarshal([]byte(stdout), &c); err != nil || code != 0 || c.Running == nil || !c.Running.Matches || !c.Running.Userns {
				t.Fatalf("userns check against the daemon: exit %d, %s (%v): %s", code, stdout, err, stderr)
			}
			stdout, _, _ = runCLI(t, d.Host, "userns", "check")
			if !strings.Contains(stdout, "running daemon: remaps as configured (name=userns, Docker Root Dir "+info.Info.DockerRootDir+")") {
				t.Errorf("userns check text:\n%s", stdout)
			}

			// Revert: every file as before, byte for byte and mode for mode.
			if _, stderr, code := runCLI(t, "unix:///nonexistent.sock", "userns", "revert", "--root", root); code != 0 {
				t.Fatalf("userns revert: exit %d: %s", code, stderr)
			}
			after := treeOf(t, filepath.Join(root, "etc"))
			for k, v := range before {
				if after[k] != v {
					t.Errorf("%s after revert: %s, want %s", k, after[k], v)
				}
			}
			for k := range after {
				if _, ok := before[k]; !ok {
					t.Errorf("%s left behind by apply and revert", k)
				}
			}
		})
	}
}

// quotedDaemonLine is the dockerd line a VP302 finding quotes.
func quotedDaemonLine(t *testing.T, msg string) string {
	t.Helper()
	m := regexp.MustCompile(`printing "((?:[^"\\]|\\.)*)"`).FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("no quoted dockerd line in %q", msg)
	}
	s, err := strconv.Unquote(`"` + m[1] + `"`)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestUsernsCheckCatchesRefusals: every broken setup that stops dockerd
// is caught by userns check before a restart, quoting the line dockerd
// prints, and the real dockerd, started on that setup, really exits
// printing it.
func TestUsernsCheckCatchesRefusals(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedDocker(t)
	testenv.EnsureUser(t, "vpuserns")
	const good = `{"userns-remap": "vpuserns"}`
	for _, tc := range []struct {
		name           string
		config         string
		subuid, subgid []string
		unit           string // docker.service ExecStart arguments, also given to the real dockerd
		private        bool   // the data root under a directory closed to others
	}{
		{name: "missing user", config: `{"userns-remap": "vpnosuch"}`, subuid: []string{"vpnosuch:100000:65536"}, subgid: []string{"vpnosuch:100000:65536"}},
		{name: "missing subuid line", config: good, subuid: []string{"other:100000:65536"}, subgid: []string{"vpuserns:100000:65536"}},
		{name: "missing subgid line", config: good, subuid: []string{"vpuserns:100000:65536"}, subgid: []string{"other:100000:65536"}},
		{name: "malformed daemon.json", config: "{\n  \"userns-remap\": \"vpuserns\",\n", subuid: []string{"vpuserns:100000:65536"}, subgid: []string{"vpuserns:100000:65536"}},
		{name: "daemon.json not an object", config: `["userns-remap", "vpuserns"]`, subuid: []string{"vpuserns:100000:65536"}, subgid: []string{"vpuserns:100000:65536"}},
		{name: "flag and daemon.json", config: good, unit: "--userns-remap=vpuserns", subuid: []string{"vpuserns:100000:65536"}, subgid: []string{"vpuserns:100000:65536"}},
		{name: "data root closed to the remapped root", config: good, private: true, subuid: []string{"vpuserns:100000:65536"}, subgid: []string{"vpuserns:100000:65536"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, text := range map[string]string{
				"etc/docker/daemon.json": tc.config,
				"etc/subuid":             strings.Join(tc.subuid, "\n") + "\n",
				"etc/subgid":             strings.Join(tc.subgid, "\n") + "\n",
			} {
				os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
				if err := os.WriteFile(filepath.Join(root, p), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range []string{"passwd", "group"} {
				data, _ := os.ReadFile("/etc/" + f)
				os.WriteFile(filepath.Join(root, "etc", f), data, 0o644)
			}
			var extra []string
			if tc.unit != "" {
				unit := filepath.Join(root, "lib/systemd/system/docker.service")
				os.MkdirAll(filepath.Dir(unit), 0o755)
				os.WriteFile(unit, []byte("[Service]\nExecStart=/usr/sbin/dockerd -H fd:// "+tc.unit+"\n"), 0o644)
				extra = append(extra, tc.unit)
			}
			dataRoot := ""
			if tc.private {
				os.MkdirAll(filepath.Join(root, "srv"), 0o755)
				os.Mkdir(filepath.Join(root, "srv/private"), 0o700)
				unit := filepath.Join(root, "lib/systemd/system/docker.service")
				os.MkdirAll(filepath.Dir(unit), 0o755)
				os.WriteFile(unit, []byte("[Service]\nExecStart=/usr/sbin/dockerd -H fd:// --data-root /srv/private/docker\n"), 0o644)
				dataRoot = filepath.Join(root, "srv/private/docker")
				extra = append(extra, "--data-root", dataRoot)
			}

			stdout, stderr, code := runCLI(t, "unix:///nonexistent.sock", "userns", "check", "--root", root, "-o", "json")
			var c checkJSON
			if err := json.Unmarshal([]byte(stdout), &c); err != nil {
				t.Fatalf("check output %q: %v (%s)", stdout, err, stderr)
			}
			if code != ExitFindings || c.Starts {
				t.Fatalf("userns check: exit %d, starts %v, want %d and false", code, c.Starts, ExitFindings)
			}
			var msgs []string
			for _, f := range c.Findings {
				if f.ID == "VP302" {
					msgs = append(msgs, quotedDaemonLine(t, f.Message))
				}
			}
			if len(msgs) == 0 {
				t.Fatalf("no VP302 finding: %+v", c.Findings)
			}

			cfg := filepath.Join(root, "etc/docker/daemon.json")
			out := testenv.StartDaemonExpectFailure(t, testenv.Layout{SubUID: tc.subuid, SubGID: tc.subgid}, append(extra, "--config-file", cfg)...)
			// dockerd of the first problem stops; it names paths as it sees them.
			first := strings.ReplaceAll(msgs[0], "/etc/docker/daemon.json", cfg)
			if dataRoot != "" {
				first = strings.ReplaceAll(first, "(/srv/private/docker/", "("+dataRoot+"/")
			}
			t.Logf("userns check quotes: %s", first)
			if !strings.Contains(out, first) {
				t.Errorf("userns check quotes %q, but dockerd printed:\n%s", first, out)
			}
		})
	}
}

// TestUsernsBadInput: bad input is a one-line error naming the file, line
// or field, a non-zero exit, and nothing written.
func TestUsernsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		config string
		code   int
		want   string
	}{
		{"unknown user", []string{"--user", "vpnosuch"}, "", ExitFindings, `remap user "vpnosuch" does not exist in ROOT/etc/passwd: give --create-user`},
		{"size 0", []string{"--user", "root", "--size", "0"}, "", ExitUsage, "--size 0: a remap needs at least one id"},
		{"size beyond the id space", []string{"--user", "root", "--size", "4294967296"}, "", ExitUsage, "--size 4294967296: beyond the id space"},
		{"size not a number", []string{"--user", "root", "--size", "lots"}, "", ExitUsage, `--size "lots": not a number of ids`},
		{"daemon.json not an object", []string{"--user", "nobody"}, `["userns-remap"]`, ExitFindings, "ROOT/etc/docker/daemon.json: the daemon configuration must be a JSON object, found an array"},
		{"daemon.json broken", []string{"--user", "nobody"}, "{\n  \"debug\": true,,\n}", ExitFindings, "ROOT/etc/docker/daemon.json:2:17: invalid JSON: invalid character ',' looking for beginning of object key string"},
		{"no user", nil, "", ExitUsage, "--user is required"},
		{"group without host user", []string{"--user", "nobody", "--host-group", "root"}, "", ExitUsage, "--host-group needs --host-user"},
		{"restart with root", []string{"--user", "nobody", "--restart"}, "", ExitUsage, "--restart restarts this host's dockerd"},
	} {
		for _, verb := range []string{"plan", "apply"} {
			if verb == "plan" && slices.Contains(tc.args, "--restart") {
				continue
			}
			t.Run(verb+" "+tc.name, func(t *testing.T) {
				root := t.TempDir()
				os.MkdirAll(filepath.Join(root, "etc/docker"), 0o755)
				os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"), 0o644)
				os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
				if tc.config != "" {
					os.WriteFile(filepath.Join(root, "etc/docker/daemon.json"), []byte(tc.config), 0o644)
				}
				before := treeOf(t, root)
				_, stderr, code := runCLI(t, "unix:///nonexistent.sock", append([]string{"userns", verb, "--root", root}, tc.args...)...)
				want := "volperm: " + strings.ReplaceAll(tc.want, "ROOT", root)
				if code != tc.code || !strings.HasPrefix(stderr, want) {
					t.Fatalf("exit %d, stderr %q; want %d, %q", code, stderr, tc.code, want)
				}
				if lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n"); len(lines) > 2 || len(lines) == 2 && lines[1] != "Run 'volperm --help' for usage." {
					t.Errorf("more than one line: %q", stderr)
				}
				after := treeOf(t, root)
				if fmt.Sprint(after) != fmt.Sprint(before) {
					t.Errorf("files changed:\nbefore %v\nafter  %v", before, after)
				}
				if _, err := os.Stat(filepath.Join(root, "var")); err == nil {
					t.Errorf("%s/var was created", root)
				}
			})
		}
	}
}

// TestUsernsApplyLiveHost runs apply and revert on this host's own
// /etc files (as testenv has saved them), creating the remap user with
// useradd as dockerd creates dockremap, with a daemon.json of the test's:
// revert deletes the user and leaves /etc/subuid, /etc/subgid and the
// daemon.json byte for byte as before.
func TestUsernsApplyLiveHost(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "useradd")
	testenv.EnsureUser(t, remapUser) // takes testenv's hold on /etc/subuid and /etc/subgid
	const name = "vpcreated"
	t.Cleanup(func() {
		if _, err := os.Stat("/etc/passwd"); err == nil && strings.Contains(readString(t, "/etc/passwd"), "\n"+name+":") {
			exec.Command("userdel", name).Run()
		}
	})
	cfg := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(cfg, []byte("{\"log-level\": \"warn\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := []string{"/etc/subuid", "/etc/subgid", cfg}
	before := map[string]string{}
	for _, f := range files {
		before[f] = readString(t, f)
	}
	stdout, stderr, code := runCLI(t, "unix:///nonexistent.sock", "userns", "apply", "--user", name, "--create-user", "--daemon-config", cfg, "-o", "json")
	if code != 0 {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	var r struct {
		UserAdd []string `json:"useradd"`
		Applied struct {
			Stamp string `json:"stamp"`
		} `json:"applied"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.Applied.Stamp == "" || r.UserAdd == nil {
		t.Fatalf("apply output %s: %v", stdout, err)
	}
	t.Cleanup(func() { os.Remove(filepath.Join("/var/lib/volperm/userns", r.Applied.Stamp+".json")) })
	if !strings.Contains(readString(t, "/etc/passwd"), "\n"+name+":") || !strings.Contains(readString(t, "/etc/subuid"), "\n"+name+":") && !strings.HasPrefix(readString(t, "/etc/subuid"), name+":") {
		t.Fatalf("no user or no subuid line after apply")
	}
	if !strings.Contains(readString(t, cfg), `"userns-remap": "`+name+`"`) {
		t.Fatalf("daemon.json: %s", readString(t, cfg))
	}
	// The setup is one dockerd would start with.
	if stdout, stderr, code := runCLI(t, "unix:///nonexistent.sock", "userns", "check", "--daemon-config", cfg); code != 0 {
		t.Fatalf("check after apply: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = runCLI(t, "unix:///nonexistent.sock", "userns", "revert")
	if code != 0 || !strings.Contains(stdout, "deleted user "+name) {
		t.Fatalf("revert: exit %d: %s%s", code, stdout, stderr)
	}
	for _, f := range files {
		if got := readString(t, f); got != before[f] {
			t.Errorf("%s after revert: %q, want %q", f, got, before[f])
		}
		if m, _ := filepath.Glob(f + ".volperm-*"); len(m) > 0 {
			t.Errorf("backups left: %v", m)
		}
	}
	if strings.Contains(readString(t, "/etc/passwd"), "\n"+name+":") {
		t.Errorf("user %s still exists after revert", name)
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestUsernsCheckExitCodes: check exits 1 when dockerd will not start or
// cannot run a remapped container (user namespaces off), 0 otherwise
// unless --fail-on asks for less; SARIF carries the findings.
func TestUsernsCheckExitCodes(t *testing.T) {
	image := func(t *testing.T, subuid, maxNS string) string {
		root := t.TempDir()
		files := map[string]string{
			"etc/passwd": "root:x:0:0::/root:/bin/sh\nvp:x:990:990::/:/bin/false\n", "etc/group": "root:x:0:\nvp:x:990:\n",
			"etc/subuid": subuid, "etc/subgid": "vp:100000:65536\n", "etc/docker/daemon.json": `{"userns-remap": "vp"}`,
			"proc/sys/user/max_user_namespaces": maxNS,
		}
		for p, text := range files {
			os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
			if err := os.WriteFile(filepath.Join(root, p), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	for _, tc := range []struct {
		name, subuid, maxNS string
		args                []string
		code                int
		ids                 string
	}{
		{"clean", "vp:100000:65536\n", "15000", nil, 0, ""},
		{"small range: a warning", "vp:100000:1000\n", "15000", nil, 0, "VP305"},
		{"small range, --fail-on warning", "vp:100000:1000\n", "15000", []string{"--fail-on", "warning"}, ExitFindings, "VP305"},
		{"no user namespaces", "vp:100000:65536\n", "0", nil, ExitFindings, "VP303"},
		{"bad --fail-on", "vp:100000:65536\n", "15000", []string{"--fail-on", "sometimes"}, ExitUsage, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := image(t, tc.subuid, tc.maxNS)
			stdout, stderr, code := runCLI(t, "unix:///nonexistent.sock", append([]string{"userns", "check", "--root", root, "-o", "sarif"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s%s", code, tc.code, stdout, stderr)
			}
			if code == ExitUsage {
				return
			}
			var log struct {
				Runs []struct {
					Results []struct {
						RuleID string `json:"ruleId"`
					} `json:"results"`
				} `json:"runs"`
			}
			if err := json.Unmarshal([]byte(stdout), &log); err != nil || len(log.Runs) != 1 {
				t.Fatalf("SARIF %q: %v", stdout, err)
			}
			var ids []string
			for _, r := range log.Runs[0].Results {
				ids = append(ids, r.RuleID)
			}
			if got := strings.Join(ids, " "); !strings.Contains(got, tc.ids) || tc.ids == "" && got != "" {
				t.Errorf("rules %q, want %q", got, tc.ids)
			}
		})
	}
}
