package userns

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/volperm/volperm/internal/host"
)

func TestSetRemap(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"missing", "", "{\n  \"userns-remap\": \"vp\"\n}\n"},
		{"blank", " \n", "{\n  \"userns-remap\": \"vp\"\n}\n"},
		{"empty object", "{}\n", "{\n  \"userns-remap\": \"vp\"\n}\n"},
		{"empty object on lines", "{\n}", "{\n  \"userns-remap\": \"vp\"\n}"},
		{"added with the indentation", "{\n    \"debug\": true,\n    \"log-opts\": {\"max-size\": \"10m\"}\n}\n",
			"{\n    \"debug\": true,\n    \"log-opts\": {\"max-size\": \"10m\"},\n    \"userns-remap\": \"vp\"\n}\n"},
		{"tabs and a tight colon", "{\n\t\"debug\":true\n}", "{\n\t\"debug\":true,\n\t\"userns-remap\":\"vp\"\n}"},
		{"one line", `{"debug": true, "hosts": ["unix:///var/run/docker.sock"]}`, `{"debug": true, "hosts": ["unix:///var/run/docker.sock"], "userns-remap": "vp"}`},
		{"replaced in place", "{\n  \"userns-remap\": \"default\",\n  \"debug\": true\n}\n", "{\n  \"userns-remap\": \"vp\",\n  \"debug\": true\n}\n"},
		{"replaced twice", `{"userns-remap": "a", "x": 1, "userns-remap" : "b"}`, `{"userns-remap": "vp", "x": 1, "userns-remap" : "vp"}`},
		{"nested key left alone", "{\n  \"x\": {\"userns-remap\": \"a\"}\n}", "{\n  \"x\": {\"userns-remap\": \"a\"},\n  \"userns-remap\": \"vp\"\n}"},
		{"escapes kept", "{\"a\\u0041\": \"\\\"q\\\"\"}", "{\"a\\u0041\": \"\\\"q\\\"\", \"userns-remap\": \"vp\"}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SetRemap([]byte(tc.in), "daemon.json", "vp")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, string(got)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	for _, tc := range []struct{ name, in, want string }{
		{"array", `["a"]`, "daemon.json: the daemon configuration must be a JSON object, found an array"},
		{"null", `null`, "daemon.json: the daemon configuration must be a JSON object, found null"},
		{"syntax", "{\n  \"debug\": true,\n}", "daemon.json:3:1: invalid JSON: invalid character '}' looking for beginning of object key string"},
		{"wrong type", `{"userns-remap": 1}`, `daemon.json:1:3: "userns-remap" must be a string, found a number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SetRemap([]byte(tc.in), "daemon.json", "vp")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzSetRemap: whatever the input, an edit either fails or yields a
// daemon.json with userns-remap set and every other key as it was.
func FuzzSetRemap(f *testing.F) {
	f.Add([]byte("{\n  \"debug\": true\n}\n"), "vp")
	f.Add([]byte(`{"userns-remap":"x","a":[1,{"b":2}]}`), "vp:docker")
	f.Add([]byte("{}"), "1000:1000")
	f.Fuzz(func(t *testing.T, data []byte, spec string) {
		out, err := SetRemap(data, "d.json", spec)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		cfg, err := host.ParseDaemonConfig(out, "d.json")
		if err != nil || cfg.UsernsRemap != spec {
			t.Fatalf("edited %q into %q: %v, remap %q", data, out, err, cfg.UsernsRemap)
		}
	})
}
