package access

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/volperm/volperm/internal/acl"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/testenv"
)

func withACL(spec ...acl.Entry) acl.ACL { return acl.ACL(spec).Sorted() }

var cases = []struct {
	name string
	f    File
	c    Cred
	want Want
	ok   bool
}{
	{"owner rw", File{UID: 1000, GID: 1000, Mode: 0o755, Dir: true}, Cred{UID: 1000, GIDs: []uint32{1000}}, acl.Write, true},
	{"seed 000: root-owned 0755 dir, uid 1000", File{UID: 0, GID: 0, Mode: 0o755, Dir: true}, Cred{UID: 1000, GIDs: []uint32{1000}}, acl.Write, false},
	{"group writable", File{UID: 0, GID: 2000, Mode: 0o775, Dir: true}, Cred{UID: 1000, GIDs: []uint32{1000, 2000}}, acl.Write, true},
	{"owner class wins over other", File{UID: 1000, GID: 0, Mode: 0o057}, Cred{UID: 1000, GIDs: []uint32{0}}, acl.Read, false},
	{"named user ACL", File{UID: 0, GID: 0, Mode: 0o775, Dir: true, ACL: withACL(acl.Entry{Tag: acl.UserObj, Perm: 7}, acl.Entry{Tag: acl.User, ID: 1000, Perm: 7}, acl.Entry{Tag: acl.GroupObj, Perm: 5}, acl.Entry{Tag: acl.Mask, Perm: 7}, acl.Entry{Tag: acl.Other, Perm: 5})},
		Cred{UID: 1000, GIDs: []uint32{1000}}, acl.Write | acl.Execute, true},
	{"mask limits named user", File{UID: 0, GID: 0, Mode: 0o755, Dir: true, ACL: withACL(acl.Entry{Tag: acl.UserObj, Perm: 7}, acl.Entry{Tag: acl.User, ID: 1000, Perm: 7}, acl.Entry{Tag: acl.GroupObj, Perm: 5}, acl.Entry{Tag: acl.Mask, Perm: 5}, acl.Entry{Tag: acl.Other, Perm: 5})},
		Cred{UID: 1000, GIDs: []uint32{1000}}, acl.Write, false},
	{"named group ACL", File{UID: 0, GID: 0, Mode: 0o770, Dir: true, ACL: withACL(acl.Entry{Tag: acl.UserObj, Perm: 7}, acl.Entry{Tag: acl.GroupObj, Perm: 0}, acl.Entry{Tag: acl.Group, ID: 2000, Perm: 7}, acl.Entry{Tag: acl.Mask, Perm: 7}, acl.Entry{Tag: acl.Other, Perm: 0})},
		Cred{UID: 1000, GIDs: []uint32{1000, 2000}}, acl.Write, true},
	{"matching group entry denies, other not consulted", File{UID: 0, GID: 1000, Mode: 0o707, ACL: withACL(acl.Entry{Tag: acl.UserObj, Perm: 7}, acl.Entry{Tag: acl.GroupObj, Perm: 0}, acl.Entry{Tag: acl.User, ID: 5, Perm: 7}, acl.Entry{Tag: acl.Mask, Perm: 7}, acl.Entry{Tag: acl.Other, Perm: 7})},
		Cred{UID: 1000, GIDs: []uint32{1000}}, acl.Read, false},
	{"root no userns", File{UID: 1000, GID: 1000, Mode: 0o700, Dir: true}, Cred{UID: 0, GIDs: []uint32{0}, CapDAC: true}, acl.Write, true},
	{"root cannot exec a file without x bits", File{UID: 1000, GID: 1000, Mode: 0o644}, Cred{UID: 0, GIDs: []uint32{0}, CapDAC: true}, acl.Execute, false},
	{"remapped root, unmapped owner: other bits", File{UID: 1000, GID: 1000, Mode: 0o755, Dir: true},
		Cred{UID: 100000, GIDs: []uint32{100000}, CapDAC: true, Userns: &idmap.Mapping{UID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}, GID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}}}, acl.Write, false},
	{"remapped root, unmapped owner, 0777", File{UID: 1000, GID: 1000, Mode: 0o777, Dir: true},
		Cred{UID: 100000, GIDs: []uint32{100000}, CapDAC: true, Userns: &idmap.Mapping{UID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}, GID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}}}, acl.Write, true},
	{"remapped root, mapped owner", File{UID: 101000, GID: 101000, Mode: 0o700, Dir: true},
		Cred{UID: 100000, GIDs: []uint32{100000}, CapDAC: true, Userns: &idmap.Mapping{UID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}, GID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}}}, acl.Write, true},
}

func TestCheck(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Check(tc.f, tc.c, tc.want)
			if d.Allowed != tc.ok {
				t.Fatalf("Check = %v (%s), want %v", d.Allowed, d.Reason, tc.ok)
			}
			if d.Reason == "" {
				t.Fatal("no reason given")
			}
		})
	}
}

// TestCheckAgainstKernel makes real files with the same metadata and asks
// the kernel, through processes running with the same non-root
// credentials, whether they may read, write and search them.
func TestCheckAgainstKernel(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "setfacl")
	// Not t.TempDir: its parent is 0700, and the processes below must
	// reach the files.
	base, err := os.MkdirTemp("", "vp-access-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		if tc.c.CapDAC {
			continue // root's capabilities are proven with real containers
		}
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(base, fmt.Sprint(i))
			var err error
			if tc.f.Dir {
				err = os.Mkdir(p, 0)
			} else {
				err = os.WriteFile(p, nil, 0)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(p, int(tc.f.UID), int(tc.f.GID)); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, os.FileMode(tc.f.Mode&0o777)); err != nil {
				t.Fatal(err)
			}
			if tc.f.ACL != nil {
				if err := acl.Set(p, acl.AccessXattr, tc.f.ACL); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, bit := range []Want{acl.Read, acl.Write, acl.Execute} {
				flag := map[Want]string{acl.Read: "-r", acl.Write: "-w", acl.Execute: "-x"}[bit]
				cmd := exec.Command("test", flag, p)
				groups := make([]uint32, len(tc.c.GIDs))
				copy(groups, tc.c.GIDs)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tc.c.UID, Gid: tc.c.GIDs[0], Groups: groups}}
				kernel := cmd.Run() == nil
				if d := Check(got, tc.c, bit); d.Allowed != kernel {
					t.Errorf("test %s: kernel says %v, Check says %v (%s)", flag, kernel, d.Allowed, d.Reason)
				}
			}
		})
	}
}
