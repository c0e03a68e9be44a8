package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteFiles writes files (path below root -> text) under root, creating
// the directories on the way.
func WriteFiles(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, text := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
