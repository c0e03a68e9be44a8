package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// runCLI runs volperm in-process against the daemon at dockerHost.
func runCLI(t *testing.T, dockerHost string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Setenv("DOCKER_HOST", dockerHost)
	var out, errb bytes.Buffer
	code = Main(append([]string{"volperm"}, args...), Env{Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), code
}

const remapUser = "vpmap"

// layouts are the remap setups proven against the real daemon. The first
// line of each subuid/subgid is written for remapUser; %d stands for its uid
// where a layout keys a line by uid.
var layouts = []struct {
	name           string
	subuid, subgid []string
	// probe are container uid:gid specs whose files are created and
	// compared; hostProbe are host ids whose view from inside is compared.
	probe     []string
	hostProbe []uint32
}{
	{
		name:   "one range",
		subuid: []string{"vpmap:100000:65536"}, subgid: []string{"vpmap:100000:65536"},
		probe:     []string{"0:0", "33:33", "1000:1000", "65535:65535"},
		hostProbe: []uint32{100000, 100033, 165535, 165536, 5},
	},
	{
		// Seed 004: host user 1000 is container root, the docker group
		// container root's group; the second range carries every other id.
		name:   "seed 004 host user first",
		subuid: []string{"vpmap:1000:1", "vpmap:200000:65536"}, subgid: []string{"vpmap:982:1", "vpmap:200000:65536"},
		probe:     []string{"0:0", "33:33", "1000:1000", "65535:65535", "65536:65536"},
		hostProbe: []uint32{1000, 200032, 265535, 999, 200000},
	},
	{
		// Ranges are used in file order, never sorted.
		name:   "reverse order",
		subuid: []string{"vpmap:300000:65536", "vpmap:1500:1"}, subgid: []string{"vpmap:300000:65536", "vpmap:1500:1"},
		probe:     []string{"0:0", "33:33", "1000:1000", "65535:65535", "65536:65536"},
		hostProbe: []uint32{300000, 300033, 1500, 1501, 299999},
	},
	{
		name:   "subgid differs from subuid",
		subuid: []string{"vpmap:100000:65536", "vpmap:2000:10"}, subgid: []string{"vpmap:400000:65536", "vpmap:2500:10"},
		probe:     []string{"0:0", "33:33", "1000:1000", "65535:65535", "65540:65540"},
		hostProbe: []uint32{100000, 400000, 2005, 2505, 165536},
	},
	{
		// Seed 003: the host user is container root: 0..65535 -> 1000..66535.
		name:   "seed 003 host user is root",
		subuid: []string{"vpmap:1000:65536"}, subgid: []string{"vpmap:1000:65536"},
		probe:     []string{"0:0", "33:33", "1000:1000", "65535:65535"},
		hostProbe: []uint32{1000, 66535, 66536, 999},
	},
	{
		// Lines keyed by name and by uid: which are used is the daemon's
		// version-dependent choice (20.10 to 27: the uid lines alone).
		name:   "lines keyed by name and by uid",
		subuid: []string{"vpmap:100000:65536", "%d:500000:65536"}, subgid: []string{"vpmap:100000:65536", "%d:500000:65536"},
		probe:     []string{"0:0", "33:33", "65535:65535"},
		hostProbe: []uint32{100000, 500000, 565535},
	},
}

func expand(lines []string, uid uint32) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if strings.Contains(l, "%d") {
			l = fmt.Sprintf(l, uid)
		}
		out[i] = l
	}
	return out
}

type mapRow struct {
	Container idmap.Pair `json:"container"`
	Host      idmap.Pair `json:"host"`
	Mapped    bool       `json:"mapped"`
}

type mapTable struct {
	UIDMap        idmap.Map `json:"uid_map"`
	GIDMap        idmap.Map `json:"gid_map"`
	Remapped      bool      `json:"remapped"`
	RootDirSuffix string    `json:"root_dir_suffix"`
	RootDir       string    `json:"root_dir"`
}

// TestMapMatchesRemappedDaemon is the contract of `volperm map`: for each
// layout, a real dockerd with --userns-remap runs containers that create
// files as given container ids, and the host-side owners are exactly what
// `volperm map` (finding the remap by itself) predicts; host-owned files
// are seen inside as `volperm map --reverse` predicts; the table's root
// dir is the one the daemon created.
func TestMapMatchesRemappedDaemon(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedDocker(t)
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			uid := testenv.EnsureUser(t, remapUser)
			d := testenv.RemapDaemon(t, testenv.Layout{User: remapUser, SubUID: expand(l.subuid, uid), SubGID: expand(l.subgid, uid)})
			img := testenv.Image(t, d)

			// Forward: container ids -> host owners.
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o1777); err != nil {
				t.Fatal(err)
			}
			got := d.CreateAs(t, img, dir, l.probe)
			stdout, stderr, code := runCLI(t, d.Host, append([]string{"map", "-o", "json"}, l.probe...)...)
			if code != 0 {
				t.Fatalf("volperm map: exit %d: %s", code, stderr)
			}
			var rows []mapRow
			if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
				t.Fatalf("volperm map output %q: %v", stdout, err)
			}
			if len(rows) != len(l.probe) {
				t.Fatalf("%d rows for %d ids", len(rows), len(l.probe))
			}
			for i, spec := range l.probe {
				host := got[spec]
				if !rows[i].Mapped || rows[i].Host != (idmap.Pair{UID: host.UID, GID: host.GID}) {
					t.Errorf("container %s: the daemon made host %d:%d, volperm map says %d:%d (mapped %v)",
						spec, host.UID, host.GID, rows[i].Host.UID, rows[i].Host.GID, rows[i].Mapped)
				}
			}

			// Reverse: host owners -> what the container sees.
			hdir := t.TempDir()
			var ids []string
			for _, h := range l.hostProbe {
				name := fmt.Sprintf("h%d", h)
				p := filepath.Join(hdir, name)
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Lchown(p, int(h), int(h)); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, strconv.FormatUint(uint64(h), 10))
			}
			seen := d.SeenAs(t, img, hdir)
			stdout, stderr, code = runCLI(t, d.Host, append([]string{"map", "-o", "json", "--reverse"}, ids...)...)
			if code != 0 {
				t.Fatalf("volperm map --reverse: exit %d: %s", code, stderr)
			}
			rows = nil
			if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
				t.Fatal(err)
			}
			for i, h := range l.hostProbe {
				s := seen[fmt.Sprintf("h%d", h)]
				if rows[i].Container != (idmap.Pair{UID: s.UID, GID: s.GID}) {
					t.Errorf("host %d: the container sees %d:%d, volperm map --reverse says %d:%d",
						h, s.UID, s.GID, rows[i].Container.UID, rows[i].Container.GID)
				}
				if unmapped := (s.UID == idmap.Overflow || s.GID == idmap.Overflow) && h != idmap.Overflow; unmapped == rows[i].Mapped {
					t.Errorf("host %d: mapped=%v but the container sees uid %d", h, rows[i].Mapped, s.UID)
				}
			}

			// The table: root dir as created by the daemon.
			stdout, stderr, code = runCLI(t, d.Host, "map", "--table", "-o", "json")
			if code != 0 {
				t.Fatalf("volperm map --table: exit %d: %s", code, stderr)
			}
			var tab mapTable
			if err := json.Unmarshal([]byte(stdout), &tab); err != nil {
				t.Fatal(err)
			}
			info, err := d.Client.Info(context.Background(), client.InfoOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if tab.RootDir != info.Info.DockerRootDir || filepath.Base(info.Info.DockerRootDir) != tab.RootDirSuffix {
				t.Errorf("table root dir %q (suffix %q), daemon DockerRootDir %q", tab.RootDir, tab.RootDirSuffix, info.Info.DockerRootDir)
			}
			if st, err := os.Stat(filepath.Join(d.DataRoot, tab.RootDirSuffix)); err != nil || !st.IsDir() {
				t.Errorf("data root has no directory %s: %v", tab.RootDirSuffix, err)
			}

			// A running container's real maps agree with the table.
			name := startSleeper(t, d, img)
			stdout, stderr, code = runCLI(t, d.Host, "map", "--container", name, "--table", "-o", "json")
			if code != 0 {
				t.Fatalf("volperm map --container: exit %d: %s", code, stderr)
			}
			var live mapTable
			if err := json.Unmarshal([]byte(stdout), &live); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tab.UIDMap, live.UIDMap); d != "" {
				t.Errorf("uid map: predicted vs the container's /proc uid_map (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tab.GIDMap, live.GIDMap); d != "" {
				t.Errorf("gid map: predicted vs the container's /proc gid_map (-want +got):\n%s", d)
			}
		})
	}
}

// TestPluginAgainstDaemon runs `docker volperm map --table` through the real
// Docker CLI with the plugin installed, against a remapped daemon chosen
// with docker's own -H flag.
func TestPluginAgainstDaemon(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedDocker(t)
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Fatalf("no docker CLI: %v", err)
	}
	testenv.EnsureUser(t, remapUser)
	d := testenv.RemapDaemon(t, testenv.Layout{User: remapUser, SubUID: []string{"vpmap:100000:65536"}, SubGID: []string{"vpmap:100000:65536"}})
	cfg := t.TempDir()
	plugins := filepath.Join(cfg, "cli-plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(plugins, "docker-volperm"), "github.com/volperm/volperm/cmd/volperm")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	cmd := exec.Command(docker, "-H", d.Host, "volperm", "map", "--table")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfg)
	cmd.Env = slicesWithout(cmd.Env, "DOCKER_HOST=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker volperm map --table: %v\n%s", err, out)
	}
	for _, want := range []string{"         0     100000      65536\n", "docker root dir suffix: 100000.100000\n", "from the dockerd command line"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("docker volperm map --table output lacks %q:\n%s", want, out)
		}
	}

	// docker volperm doctor, on a project for that daemon: its image
	// resolves the user and the remap shapes the finding.
	img := testenv.Image(t, d)
	proj := t.TempDir()
	if err := os.WriteFile(filepath.Join(proj, "compose.yaml"), []byte("services:\n  app:\n    image: "+img+"\n    user: www-data\n    volumes: [\"./logs:/logs\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(docker, "-H", d.Host, "volperm", "doctor", "--project-dir", proj)
	cmd.Env = slicesWithout(append(os.Environ(), "DOCKER_CONFIG="+cfg), "DOCKER_HOST=")
	out, err = cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != ExitFindings {
		t.Fatalf("docker volperm doctor: exit %d (%v)\n%s", code, err, out)
	}
	for _, want := range []string{"VP101", "owned by host 100000:100000", "install -d -o 100033 -g 100033 -m 0755"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("docker volperm doctor output lacks %q:\n%s", want, out)
		}
	}
}

func slicesWithout(env []string, prefix string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// TestDaemonRefusesWhatMapPredicts proves the error texts: for broken remap
// setups the real dockerd exits printing exactly the message volperm quotes.
func TestDaemonRefusesWhatMapPredicts(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedDocker(t)
	testenv.EnsureUser(t, remapUser)
	for _, tc := range []struct {
		name           string
		subuid, subgid []string
		spec           string
	}{
		{"no subuid line", []string{"other:100000:65536"}, []string{"vpmap:100000:65536"}, remapUser},
		{"no subgid line", []string{"vpmap:100000:65536"}, []string{"other:100000:65536"}, remapUser},
		{"no such user", []string{"vpmap:100000:65536"}, []string{"vpmap:100000:65536"}, "vpnosuch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := testenv.StartDaemonExpectFailure(t, testenv.Layout{User: remapUser, SubUID: tc.subuid, SubGID: tc.subgid}, "--userns-remap="+tc.spec)
			_, stderr, code := runCLI(t, "unix:///nonexistent.sock", "map", "--remap", tc.spec, "0")
			if code != ExitFindings {
				t.Fatalf("volperm map exit %d, want %d: %s", code, ExitFindings, stderr)
			}
			msg := quotedDaemonMessage(t, stderr)
			t.Logf("volperm quotes: %s", msg)
			if !strings.Contains(out, msg) {
				t.Errorf("volperm quotes %q but dockerd printed:\n%s", msg, out)
			}
		})
	}
}

// quotedDaemonMessage extracts the daemon's words from a volperm error.
func quotedDaemonMessage(t *testing.T, stderr string) string {
	t.Helper()
	if m := regexp.MustCompile(`will not start \("(.*)"\); add a line`).FindStringSubmatch(stderr); m != nil {
		s, err := strconv.Unquote(`"` + m[1] + `"`)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if m := regexp.MustCompile(`dockerd will not start: (.*?); (create|give)`).FindStringSubmatch(stderr); m != nil {
		return m[1]
	}
	t.Fatalf("no daemon message in %q", stderr)
	return ""
}

// startSleeper starts a container that runs until the test ends.
func startSleeper(t *testing.T, d *testenv.Daemon, img string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := fmt.Sprintf("vp-sleeper-%d", time.Now().UnixNano())
	_, err := d.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       name,
		Config:     &container.Config{Image: img, Cmd: []string{"sleep", "300"}},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = d.Client.ContainerRemove(context.Background(), name, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := d.Client.ContainerStart(ctx, name, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}
