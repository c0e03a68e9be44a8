package host

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/testenv"
)

func TestReadDockerUnit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  *Unit
	}{
		{"none", nil, nil},
		{
			// Debian's docker.io unit: options come from /etc/default/docker.
			"debian", map[string]string{
				"lib/systemd/system/docker.service": "[Unit]\nDescription=Docker\n\n[Service]\nType=notify\nEnvironmentFile=-/etc/default/docker\n" +
					"ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock $DOCKER_OPTS\nExecReload=/bin/kill -s HUP $MAINPID\n",
				"etc/default/docker": "# Docker options\nDOCKER_OPTS=\"--userns-remap=mino --data-root /srv/docker\"\n",
			},
			&Unit{Path: "/lib/systemd/system/docker.service", Args: []string{"/usr/sbin/dockerd", "-H", "fd://", "--containerd=/run/containerd/containerd.sock", "--userns-remap=mino", "--data-root", "/srv/docker"}},
		},
		{
			// A drop-in resets ExecStart and sets its own, continued over lines.
			"drop-in", map[string]string{
				"lib/systemd/system/docker.service":                 "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
				"etc/systemd/system/docker.service.d/20-remap.conf": "[Service]\nEnvironment=\"REMAP=vp:docker\" OTHER=1\nExecStart=\nExecStart=/usr/bin/dockerd -H fd:// \\\n  --userns-remap=${REMAP}\n",
				"etc/systemd/system/docker.service.d/10-other.conf": "[Service]\nLimitNOFILE=1048576\n",
				"etc/systemd/system/docker.service.d/README":        "not a drop-in\n",
			},
			&Unit{Path: "/lib/systemd/system/docker.service",
				DropIns: []string{"/etc/systemd/system/docker.service.d/10-other.conf", "/etc/systemd/system/docker.service.d/20-remap.conf"},
				Args:    []string{"/usr/bin/dockerd", "-H", "fd://", "--userns-remap=vp:docker"}},
		},
		{
			// A full unit in /etc overrides the packaged one.
			"override", map[string]string{
				"lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
				"etc/systemd/system/docker.service": "[Service]\nExecStart=-/usr/bin/dockerd --config-file=/etc/docker/other.json\n",
			},
			&Unit{Path: "/etc/systemd/system/docker.service", Args: []string{"/usr/bin/dockerd", "--config-file=/etc/docker/other.json"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			testenv.WriteFiles(t, root, tc.files)
			got, err := ReadDockerUnit(root)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("unit (-want +got):\n%s", d)
			}
		})
	}
	root := t.TempDir()
	testenv.WriteFiles(t, root, map[string]string{"lib/systemd/system/docker.service": "[Service]\nExecStart /usr/bin/dockerd\n"})
	if _, err := ReadDockerUnit(root); err == nil || err.Error() != `/lib/systemd/system/docker.service:2: want KEY=VALUE, found "ExecStart /usr/bin/dockerd"` {
		t.Errorf("bad line: %v", err)
	}
}

// TestRefusal pins the texts dockerd prints for configuration files it
// refuses; the 20.10 ones were observed on dockerd 20.10.24 (and are
// proven again by the userns tests in internal/cli).
func TestRefusal(t *testing.T) {
	old, cur := idmap.Version{Major: 20, Minor: 10, Patch: 24}, idmap.Latest
	const pre = "unable to configure the Docker daemon with file /etc/docker/daemon.json: "
	for _, tc := range []struct {
		name, in    string
		want20, now string // "" = accepted
	}{
		{"object", `{"userns-remap": "vp"}`, "", ""},
		{"empty", "", pre + "EOF", ""},
		{"blank", " \n", pre + "EOF", ""},
		{"truncated", `{"userns-remap": "vp"`, pre + "unexpected EOF", pre + "unexpected end of JSON input"},
		{"trailing comma", `{"userns-remap": "vp",}`, pre + "invalid character '}' looking for beginning of object key string", pre + "invalid character '}' looking for beginning of object key string"},
		{"array", `["a"]`, pre + "json: cannot unmarshal array into Go value of type map[string]interface {}", pre + "json: cannot unmarshal array into Go value of type map[string]interface {}"},
		{"trailing data", `{"debug": true} x`, "", pre + "invalid character 'x' after top-level value"},
		{"number", `{"userns-remap": 5}`, pre + "json: cannot unmarshal number into Go struct field Config.userns-remap of type string", pre + "json: cannot unmarshal number into Go struct field Config.userns-remap of type string"},
		{"null", `null`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Refusal([]byte(tc.in), DefaultDaemonConfig, old); got != tc.want20 {
				t.Errorf("20.10: %q, want %q", got, tc.want20)
			}
			if got := Refusal([]byte(tc.in), DefaultDaemonConfig, cur); got != tc.now {
				t.Errorf("%s: %q, want %q", cur, got, tc.now)
			}
		})
	}
}
