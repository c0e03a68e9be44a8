package testenv

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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

// FileCap is a security.capability value granting CAP_NET_BIND_SERVICE
// (effective): version 2, or version 3 naming rootid as the host uid of
// its namespace's root.
func FileCap(v3 bool, rootid uint32) []byte {
	b := make([]byte, 20, 24)
	rev := uint32(0x02000000)
	if v3 {
		b, rev = b[:24], 0x03000000
		binary.LittleEndian.PutUint32(b[20:], rootid)
	}
	binary.LittleEndian.PutUint32(b, rev|1) // effective
	binary.LittleEndian.PutUint32(b[4:], 1<<unix.CAP_NET_BIND_SERVICE)
	return b
}
