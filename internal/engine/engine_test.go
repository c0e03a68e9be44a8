package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestResolveEndpoint(t *testing.T) {
	cfg := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfg)
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_CONTEXT", "")
	write := func(p, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256([]byte("remapped"))
	write(filepath.Join(cfg, "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json"),
		`{"Name":"remapped","Endpoints":{"docker":{"Host":"unix:///tmp/remapped.sock"}}}`)

	check := func(explicit, want string) {
		t.Helper()
		ep, err := ResolveEndpoint(explicit)
		if err != nil || ep.Host != want {
			t.Fatalf("ResolveEndpoint(%q) = %+v, %v; want %s", explicit, ep, err, want)
		}
	}
	check("", DefaultHost)
	write(filepath.Join(cfg, "config.json"), `{"currentContext":"remapped"}`)
	check("", "unix:///tmp/remapped.sock")
	t.Setenv("DOCKER_CONTEXT", "default")
	check("", DefaultHost)
	t.Setenv("DOCKER_HOST", "unix:///tmp/h.sock")
	check("", "unix:///tmp/h.sock")
	check("remapped", "unix:///tmp/remapped.sock")
	if _, err := ResolveEndpoint("nosuch"); err == nil {
		t.Fatal("an unknown context resolved")
	}
}
