package identity

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// SubID is one /etc/subuid or /etc/subgid line: Owner may use Count ids
// starting at Start. Owner is a user name or a numeric uid, as written.
type SubID struct {
	Owner string
	Start uint32
	Count uint32
	Line  int
}

// Last is the last id of the range.
func (s SubID) Last() uint32 { return s.Start + s.Count - 1 }

// lenient says what dockerd does with a bad number: moby/sys/user ignores the
// conversion error and keeps 0 (23.0 to 27.x refuse to start instead).
const lenient = "dockerd reads it as 0"

// ParseSubID parses subuid(5)/subgid(5) text. Blank lines and '#' comments
// are skipped (shadow-utils skips them; dockerd keeps a comment as a name
// that never matches, which comes to the same thing).
func ParseSubID(r io.Reader, file string) ([]SubID, error) {
	var out []SubID
	err := scanLines(r, func(line string, n int) error {
		f := strings.Split(line, ":")
		if len(f) != 3 {
			return &LineError{File: file, Line: n, Msg: fmt.Sprintf("want 3 fields name:start:count, found %d (%s for a missing number)", len(f), lenient)}
		}
		if f[0] == "" {
			return &LineError{File: file, Line: n, Field: "name", Msg: "empty"}
		}
		start, err := ParseID(f[1])
		if err != nil {
			return &LineError{File: file, Line: n, Field: "start", Msg: fmt.Sprintf("%v (%s)", err, lenient)}
		}
		count, err := ParseID(f[2])
		if err != nil {
			return &LineError{File: file, Line: n, Field: "count", Msg: fmt.Sprintf("%v (%s)", err, lenient)}
		}
		if count == 0 {
			return &LineError{File: file, Line: n, Field: "count", Msg: "0: the range is empty and the kernel refuses an empty id map extent"}
		}
		if uint64(start)+uint64(count)-1 > MaxID {
			return &LineError{File: file, Line: n, Field: "count", Msg: fmt.Sprintf("range %d+%d runs past the largest id %d", start, count, uint64(MaxID))}
		}
		out = append(out, SubID{Owner: f[0], Start: start, Count: count, Line: n})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ParseSubIDFile opens and parses a subuid or subgid file.
func ParseSubIDFile(path string) ([]SubID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading subordinate id file: %w", err)
	}
	defer f.Close()
	return ParseSubID(f, path)
}
