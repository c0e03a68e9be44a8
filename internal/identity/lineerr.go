package identity

import "fmt"

// LineError is a problem with one line of a file: which file, which line
// (1-based), which field, and what is wrong with it.
type LineError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// MaxID is the largest valid user or group ID. (uid_t)-1 is reserved: chown
// and setuid use it to mean "leave unchanged", so no file or process can
// carry it.
const MaxID = 1<<32 - 2

// ParseID parses a decimal user or group ID in 0..MaxID.
func ParseID(s string) (uint32, error) {
	if s == "" {
		return 0, fmt.Errorf("empty, want a number")
	}
	var n uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
		n = n*10 + uint64(c-'0')
		if n > MaxID {
			return 0, fmt.Errorf("%s is beyond the largest id %d", s, uint64(MaxID))
		}
	}
	return uint32(n), nil
}
