package entrypoint

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mountPoints returns the mount points of this mount namespace, as
// /proc/self/mountinfo lists them (field 5, octal escapes undone).
func mountPoints() (map[string]bool, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return parseMountInfo(data), nil
}

func parseMountInfo(data []byte) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		out[filepath.Clean(unescapeMount(f[4]))] = true
	}
	return out
}

// unescapeMount undoes the kernel's \ooo escapes of space, tab, newline
// and backslash in mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// below returns the mount points strictly below dir.
func below(mounts map[string]bool, dir string) []string {
	var out []string
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for m := range mounts {
		if strings.HasPrefix(m, prefix) {
			out = append(out, m)
		}
	}
	return out
}
