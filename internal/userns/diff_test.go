package userns

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/volperm/volperm/internal/testenv"
)

// TestDiffAgainstDiffU compares Diff with GNU diff -u on the kinds of edit
// a plan makes, when diff is installed.
func TestDiffAgainstDiffU(t *testing.T) {
	for _, tc := range []struct{ name, old, new string }{
		{"append", "a:1:1\nb:2:2\nc:3:3\nd:4:4\ne:5:5\n", "a:1:1\nb:2:2\nc:3:3\nd:4:4\ne:5:5\nvp:100000:65536\n"},
		{"comment out and append", "1\n2\nvp:1:2\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "1\n2\n# replaced by volperm userns: vp:1:2\n4\n5\n6\n7\n8\n9\n10\n11\n12\nvp:100000:65536\n"},
		{"insert in front", "x:1:1\nvp:100000:65536\n", "x:1:1\nvp:1000:1\nvp:100000:65536\n"},
		{"no newline at end", "{\n  \"debug\": true\n}", "{\n  \"debug\": true,\n  \"userns-remap\": \"vp\"\n}"},
		{"from empty", "", "vp:100000:65536\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Diff("f", true, []byte(tc.old), []byte(tc.new))
			testenv.NeedCommand(t, "diff")
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "a"), []byte(tc.old), 0o644)
			os.WriteFile(filepath.Join(dir, "b"), []byte(tc.new), 0o644)
			cmd := exec.Command("diff", "-u", "--label", "f", "--label", "f", "a", "b")
			cmd.Dir = dir
			want, _ := cmd.Output()
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("Diff vs diff -u (-want +got):\n%s", d)
			}
		})
	}
	if got := Diff("f", false, nil, []byte("x\n")); !strings.HasPrefix(got, "--- /dev/null\n+++ f\n@@ -0,0 +1 @@\n+x\n") {
		t.Errorf("new file: %q", got)
	}
}
