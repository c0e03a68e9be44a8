package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestChmodSymbolic(t *testing.T) {
	for _, tc := range []struct {
		c    Chmod
		want string
	}{
		{Chmod{Path: "/d", Clear: 0o002}, "chmod o-w /d"},
		{Chmod{Path: "/d", Set: 0o2070}, "chmod g+rwxs /d"},
		{Chmod{Path: "/s", Clear: 0o007}, "chmod o-rwx /s"},
		{Chmod{Path: "/x", Set: 0o007}, ""}, // nothing is ever granted to others
	} {
		if got := tc.c.Shell(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestCheckOwnable(t *testing.T) {
	for p, ok := range map[string]bool{"/": false, "/etc": false, "/etc/nginx": false, "/usr/local/x": false, "/home": false,
		"/home/alice/logs": true, "/srv/app/data": true, "/var/lib/docker/volumes/x": false, "/var/lib/app": true} {
		if err := CheckOwnable(p); (err == nil) != ok {
			t.Errorf("CheckOwnable(%s) = %v", p, err)
		}
	}
}

func TestComposeEditKeepsContent(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "compose.override.yaml")
	orig := "# my overrides\nservices:\n  web:\n    environment:\n      DEBUG: \"1\" # keep me\n"
	if err := os.WriteFile(f, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	e := ComposeEdit{File: f, Service: "agent", GroupAdd: "105"}
	if changed, err := e.Apply(); err != nil || !changed {
		t.Fatalf("Apply = %v, %v", changed, err)
	}
	got, _ := os.ReadFile(f)
	for _, want := range []string{"# my overrides", "DEBUG: \"1\" # keep me", "agent:", "group_add:", "- \"105\""} {
		if !strings.Contains(string(got), want) {
			t.Errorf("override lacks %q:\n%s", want, got)
		}
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
	}
	if changed, err := e.Apply(); err != nil || changed {
		t.Fatalf("second Apply = %v, %v", changed, err)
	}
	// The printed form, run by sh, gives the same file.
	os.WriteFile(f, []byte(orig), 0o640)
	sh := e.Shell()
	if !strings.Contains(sh, "sha256sum -c --status") {
		t.Fatalf("the shell form does not guard against a changed file:\n%s", sh)
	}
}

func TestAppendLineAndMkdir(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "subuid")
	os.WriteFile(f, []byte("a:100000:65536"), 0o600)
	a := AppendLine{File: f, Line: "vp:165536:65536"}
	if c, err := a.Apply(); err != nil || !c {
		t.Fatal(c, err)
	}
	if c, _ := a.Apply(); c {
		t.Fatal("appended twice")
	}
	got, _ := os.ReadFile(f)
	if string(got) != "a:100000:65536\nvp:165536:65536\n" {
		t.Fatalf("%q", got)
	}
	m := Mkdir{Path: filepath.Join(dir, "x", "logs"), UID: 1000, GID: 1000, Mode: 0o777}
	if m.Shell() != "install -d -o 1000 -g 1000 -m 0775 "+m.Path {
		t.Fatalf("Mkdir shell %q strips o+w", m.Shell())
	}
	if c, err := m.Apply(); err != nil || !c {
		t.Fatal(c, err)
	}
	if c, err := m.Apply(); err != nil || c {
		t.Fatalf("second Apply changed: %v %v", c, err)
	}
	st, _ := os.Stat(m.Path)
	if st.Mode().Perm() != 0o775 {
		t.Fatalf("mode %v", st.Mode())
	}
	link := filepath.Join(dir, "link")
	os.Symlink("/etc", link)
	if _, err := (Chown{Path: link, UID: 1, GID: 1}).Apply(); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("chown through a symlink: %v", err)
	}
	if _, err := (Chown{Path: "/etc", UID: 1, GID: 1}).Apply(); err == nil || !strings.Contains(err.Error(), "system path") {
		t.Fatalf("chown /etc: %v", err)
	}
}
