package idmap

import (
	"bytes"
	"testing"
)

// FuzzParseProc checks that whatever map the parser accepts is one the
// kernel would accept too, and that translation through it round-trips.
func FuzzParseProc(f *testing.F) {
	f.Add([]byte("0 100000 65536\n65536 1500 1\n"))
	f.Add([]byte("0 0 4294967295\n"))
	f.Add([]byte("1 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseProc(bytes.NewReader(data), "uid_map")
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted an invalid map: %v", err)
		}
		for _, e := range m {
			for _, id := range []uint32{e.Container, e.Container + e.Size - 1} {
				h, ok := m.ToHost(id)
				if !ok {
					t.Fatalf("container %d inside %v not mapped", id, e)
				}
				if c, ok := m.ToContainer(h); !ok || c != id {
					t.Fatalf("round trip %d -> %d -> %d", id, h, c)
				}
			}
		}
	})
}
