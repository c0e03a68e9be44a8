package host

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDaemonConfig(t *testing.T) {
	cfg, err := ParseDaemonConfig([]byte(`{"userns-remap": "vp:docker", "data-root": "/srv/docker", "log-level": "warn"}`), "daemon.json")
	if err != nil || cfg.UsernsRemap != "vp:docker" || cfg.DataRoot != "/srv/docker" || len(cfg.Raw) != 3 {
		t.Fatalf("cfg = %+v, %v", cfg, err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"truncated", "{\n  \"userns-remap\": \"vp\",\n", "daemon.json:3:1: invalid JSON: unexpected end of JSON input"},
		{"syntax", "{\n  \"userns-remap\" \"vp\"\n}", "daemon.json:2:18: invalid JSON"},
		{"not an object", `["userns-remap"]`, "daemon.json: the daemon configuration must be a JSON object, found an array"},
		{"wrong type", "{\n \"userns-remap\": 5}", `daemon.json:2:3: "userns-remap" must be a string, found a number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDaemonConfig([]byte(tc.in), "daemon.json")
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want prefix %q", err, tc.want)
			}
		})
	}
	if cfg, err := ParseDaemonConfig([]byte("  \n"), "daemon.json"); err != nil || cfg.UsernsRemap != "" {
		t.Fatalf("empty file: %+v, %v", cfg, err)
	}
}

func TestDockerdFlags(t *testing.T) {
	p := Process{PID: 7, Args: []string{"/usr/bin/dockerd", "-H", "fd://", "--userns-remap", "vp", "--data-root=/srv/d", "--userns-remap=mino"}}
	if v, ok := p.Flag("--userns-remap"); !ok || v != "mino" {
		t.Errorf("userns-remap = %q, %v; the last one wins", v, ok)
	}
	if v, _ := p.Flag("--data-root", "-g"); v != "/srv/d" {
		t.Errorf("data-root = %q", v)
	}
	second := Process{PID: 8, Args: []string{"dockerd", "--host=unix:///tmp/x/d.sock", "--userns-remap=vp"}}
	procs := []Process{p, second}
	for endpoint, want := range map[string]int{
		"unix:///var/run/docker.sock": 7,
		"unix:///run/docker.sock":     7,
		"":                            7,
		"unix:///tmp/x/d.sock":        8,
		"unix:///tmp/x/../x/d.sock":   8,
	} {
		got, ok := ServingDockerd(procs, endpoint)
		if !ok || got.PID != want {
			t.Errorf("ServingDockerd(%q) = %d, %v; want %d", endpoint, got.PID, ok, want)
		}
	}
	if _, ok := ServingDockerd(procs, "tcp://10.0.0.1:2376"); ok {
		t.Error("a tcp endpoint matched a local dockerd")
	}
}

func FuzzParseDaemonConfig(f *testing.F) {
	f.Add([]byte(`{"userns-remap":"default"}`))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseDaemonConfig(data, "d.json")
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error %q", err)
		}
	})
}

func TestReadKernel(t *testing.T) {
	root := t.TempDir()
	write := func(p, text string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var data []byte
		if strings.HasSuffix(p, ".gz") {
			var b bytes.Buffer
			gz := gzip.NewWriter(&b)
			gz.Write([]byte(text))
			gz.Close()
			data = b.Bytes()
		} else {
			data = []byte(text)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/sys/user/max_user_namespaces", "0\n")
	write("proc/config.gz", "CONFIG_FOO=y\n# CONFIG_USER_NS is not set\n")
	k := ReadKernel(root)
	if k.UserNS != "n" || k.MaxUserNamespaces != 0 || k.UnprivilegedClone != -1 || k.ConfigFile != filepath.Join(root, "proc/config.gz") {
		t.Fatalf("%+v", k)
	}
	if real := ReadKernel("/"); real.MaxUserNamespaces < 0 {
		t.Logf("this host hides max_user_namespaces: %+v", real)
	}
}
