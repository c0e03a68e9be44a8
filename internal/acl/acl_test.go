package acl

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volperm/volperm/internal/testenv"
)

func TestEncodeDecode(t *testing.T) {
	a := ACL{
		{Tag: Other, Perm: 5},
		{Tag: User, Perm: 7, ID: 1000},
		{Tag: UserObj, Perm: 7},
		{Tag: Mask, Perm: 7},
		{Tag: GroupObj, Perm: 5},
		{Tag: User, Perm: 6, ID: 33},
	}
	got, err := Decode(a.Encode())
	if err != nil {
		t.Fatal(err)
	}
	want := "user::rwx,user:33:rw-,user:1000:rwx,group::r-x,mask::rwx,other::r-x"
	if got.String() != want {
		t.Fatalf("round trip = %s, want %s", got, want)
	}
	for _, tc := range []struct {
		name string
		acl  ACL
		want string
	}{
		{"no mask", ACL{{Tag: UserObj, Perm: 7}, {Tag: User, ID: 1, Perm: 7}, {Tag: GroupObj}, {Tag: Other}}, "named entries but no mask"},
		{"two owners", ACL{{Tag: UserObj}, {Tag: UserObj}, {Tag: GroupObj}, {Tag: Other}}, "2 user:: entries"},
		{"duplicate", ACL{{Tag: UserObj}, {Tag: User, ID: 5}, {Tag: User, ID: 5}, {Tag: GroupObj}, {Tag: Mask}, {Tag: Other}}, "user:5 repeated"},
		{"bad perm", ACL{{Tag: UserObj, Perm: 8}, {Tag: GroupObj}, {Tag: Other}}, "beyond rwx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.acl.Sorted().Valid(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Valid = %v, want %q", err, tc.want)
			}
		})
	}
	for _, b := range [][]byte{nil, {2, 0, 0}, {3, 0, 0, 0}, {2, 0, 0, 0, 1, 0}} {
		if _, err := Decode(b); err == nil {
			t.Errorf("Decode(%v) accepted", b)
		}
	}
}

// TestAgainstSetfacl round-trips with Debian's acl tools on a real
// filesystem: what setfacl writes we read, what we write getfacl reads.
func TestAgainstSetfacl(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "setfacl")
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("setfacl", "-m", "u:1000:rw,u:33:r,g:2000:rwx", f)
	got, err := Get(f, AccessXattr)
	if err != nil {
		t.Fatal(err)
	}
	if want := "user::rw-,user:33:r--,user:1000:rw-,group::r--,group:2000:rwx,mask::rwx,other::---"; got.String() != want {
		t.Fatalf("read back %s, want %s", got, want)
	}

	mine := ACL{{Tag: UserObj, Perm: 7}, {Tag: User, ID: 100032, Perm: 7}, {Tag: GroupObj, Perm: 5}, {Tag: Mask, Perm: 7}, {Tag: Other, Perm: 0}}
	if err := Set(dir, DefaultXattr, mine); err != nil {
		t.Fatal(err)
	}
	if err := Set(dir, AccessXattr, mine); err != nil {
		t.Fatal(err)
	}
	out := run("getfacl", "-n", "-p", "-c", dir)
	for _, want := range []string{"user:100032:rwx", "default:user:100032:rwx", "default:mask::rwx", "other::---"} {
		if !strings.Contains(out, want) {
			t.Errorf("getfacl lacks %q:\n%s", want, out)
		}
	}
	// A file created in the directory inherits the default ACL, as the
	// kernel applies it.
	child := filepath.Join(dir, "child")
	if err := os.WriteFile(child, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	inherited, err := Get(child, AccessXattr)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := inherited.Find(User, 100032); !ok || e.Perm != 7 {
		t.Errorf("inherited ACL %s lacks user:100032:rwx", inherited)
	}
	if none, err := Get(filepath.Join(dir, "f"), DefaultXattr); err != nil || none != nil {
		t.Errorf("default ACL of a plain file = %v, %v; want none", none, err)
	}
	if got, want := mustGet(t, dir, DefaultXattr).String(), mine.String(); got != want {
		t.Errorf("default ACL %s, want %s", got, want)
	}
}

func mustGet(t *testing.T, path, xattr string) ACL {
	t.Helper()
	a, err := Get(path, xattr)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func FuzzDecode(f *testing.F) {
	f.Add(ACL{{Tag: UserObj, Perm: 7}, {Tag: User, ID: 1, Perm: 6}, {Tag: GroupObj}, {Tag: Mask, Perm: 6}, {Tag: Other}}.Encode())
	f.Add([]byte{2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(a.Encode())
		if err != nil {
			t.Fatalf("re-encoding an accepted ACL: %v", err)
		}
		if a.String() != again.String() {
			t.Fatalf("round trip %s != %s", a, again)
		}
	})
}
