package identity

import (
	"bytes"
	"fmt"
	"testing"
)

// The parsers must never panic, and whatever they accept must round-trip:
// printing the entries back and parsing again gives the same entries.

func FuzzParseSubID(f *testing.F) {
	f.Add([]byte("vp:100000:65536\nvp:1500:1\n"))
	f.Add([]byte("# c\n1000:0:4294967295\n"))
	f.Add([]byte("a:b:c\n:::\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := ParseSubID(bytes.NewReader(data), "f")
		if err != nil {
			return
		}
		var b bytes.Buffer
		for _, l := range lines {
			if l.Count == 0 || uint64(l.Start)+uint64(l.Count)-1 > MaxID {
				t.Fatalf("accepted a bad range %+v", l)
			}
			fmt.Fprintf(&b, "%s:%d:%d\n", l.Owner, l.Start, l.Count)
		}
		again, err := ParseSubID(&b, "f")
		if err != nil || len(again) != len(lines) {
			t.Fatalf("round trip: %v (%d vs %d entries)", err, len(again), len(lines))
		}
	})
}

func FuzzParsePasswd(f *testing.F) {
	f.Add([]byte("root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n"))
	f.Add([]byte("+::::::\n#x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := ParsePasswd(bytes.NewReader(data), "f")
		if err != nil {
			return
		}
		for _, u := range users {
			if u.Name == "" || u.Line < 1 {
				t.Fatalf("accepted %+v", u)
			}
		}
	})
}

func FuzzParseGroup(f *testing.F) {
	f.Add([]byte("root:x:0:\nshared:x:2000:a,b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		groups, err := ParseGroup(bytes.NewReader(data), "f")
		if err != nil {
			return
		}
		for _, g := range groups {
			for _, m := range g.Members {
				if m == "" {
					t.Fatalf("empty member in %+v", g)
				}
			}
		}
	})
}
