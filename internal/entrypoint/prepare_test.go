package entrypoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/testenv"
)

const (
	testPasswd = `# accounts of the image
root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/false
+nis-line
node:x:1000:1000:node:/home/node:/bin/sh
broken line without fields
app:x:1001:100::/home/app:/bin/sh
`
	testGroup = `root:x:0:
www-data:x:33:
users:x:100:
node:x:1000:
app-friends:x:1500:app
shared:x:2000:node,www-data
wheel:x:10:root
`
)

// fakeRoot lays out a container root filesystem in a temporary directory:
// /etc/passwd, /etc/group, the homes (owned as passwd says) and a work
// directory owned by work.
func fakeRoot(t *testing.T, workUID, workGID int) string {
	t.Helper()
	testenv.NeedRoot(t)
	root := t.TempDir()
	for _, d := range []string{"etc", "work", "home/node/.cache", "home/app", "var/www", "var/run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(root, "etc/passwd"), testPasswd, 0o644)
	write(t, filepath.Join(root, "etc/group"), testGroup, 0o644)
	write(t, filepath.Join(root, "home/node/.profile"), "x", 0o644)
	write(t, filepath.Join(root, "home/node/suid"), "x", 0o4755)
	for path, o := range map[string][2]int{
		"home/node": {1000, 1000}, "home/node/.cache": {1000, 1000}, "home/node/.profile": {1000, 1000},
		"home/node/suid": {1000, 1000}, "home/app": {1001, 100}, "work": {workUID, workGID},
	} {
		if err := os.Lchown(filepath.Join(root, path), o[0], o[1]); err != nil {
			t.Fatal(err)
		}
	}
	// chown cleared it: the setuid bit must survive volperm's re-owning.
	if err := os.Chmod(filepath.Join(root, "home/node/suid"), 0o4755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	return root
}

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func owner(t *testing.T, path string) [2]uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return [2]uint32{st.Uid, st.Gid}
}

func opts(t *testing.T, args ...string) options {
	t.Helper()
	o, err := parseOptions(append(args, "--", "true"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func prepareIn(t *testing.T, root string, start []uint32, args ...string) (*target, error) {
	t.Helper()
	mounts, err := mountPoints()
	if err != nil {
		t.Fatal(err)
	}
	p := &preparer{root: root, startGroups: start, commit: writePair, mounts: mounts}
	return p.prepare(context.Background(), opts(t, args...))
}

func TestMatchMovesTheAccount(t *testing.T) {
	root := fakeRoot(t, 1234, 1234)
	tg, err := prepareIn(t, root, []uint32{0}, "--user", "node", "--match", "/work")
	if err != nil {
		t.Fatal(err)
	}
	if tg.uid != 1234 || tg.gid != 1234 || tg.name != "node" || tg.home != "/home/node" {
		t.Errorf("target = %+v, want node 1234:1234 /home/node", tg)
	}
	if !slices.Equal(tg.groups, []uint32{1234, 2000}) {
		t.Errorf("groups = %v, want [1234 2000] (the primary gid and node's membership of shared)", tg.groups)
	}
	// Only node's line and node's group changed; comments, NIS and
	// unparsable lines are kept byte for byte.
	wantPasswd := strings.Replace(testPasswd, "node:x:1000:1000:", "node:x:1234:1234:", 1)
	if got := read(t, filepath.Join(root, "etc/passwd")); got != wantPasswd {
		t.Errorf("/etc/passwd =\n%s\nwant\n%s", got, wantPasswd)
	}
	wantGroup := strings.Replace(testGroup, "node:x:1000:", "node:x:1234:", 1)
	if got := read(t, filepath.Join(root, "etc/group")); got != wantGroup {
		t.Errorf("/etc/group =\n%s\nwant\n%s", got, wantGroup)
	}
	for _, p := range []string{"home/node", "home/node/.cache", "home/node/.profile", "home/node/suid"} {
		if got := owner(t, filepath.Join(root, p)); got != [2]uint32{1234, 1234} {
			t.Errorf("%s owned by %v, want 1234:1234", p, got)
		}
	}
	if got := owner(t, filepath.Join(root, "home/app")); got != [2]uint32{1001, 100} {
		t.Errorf("another account's home was touched: %v", got)
	}
	fi, err := os.Stat(filepath.Join(root, "home/node/suid"))
	if err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("the setuid bit was lost in the re-owning: %v %v", fi.Mode(), err)
	}
	if tg.chownCount != 4 {
		t.Errorf("re-owned %d entries, want 4", tg.chownCount)
	}

	// A restart finds everything in place: no edit, no re-owning, no note.
	before := map[string]string{}
	for _, f := range []string{"etc/passwd", "etc/group"} {
		before[f] = read(t, filepath.Join(root, f))
	}
	var st1 unix.Stat_t
	unix.Lstat(filepath.Join(root, "home/node/.profile"), &st1)
	again, err := prepareIn(t, root, []uint32{0}, "--user", "node", "--match", "/work")
	if err != nil {
		t.Fatal(err)
	}
	if again.chownCount != 0 || len(again.notes) != 0 {
		t.Errorf("second run did work: %d re-owned, notes %q", again.chownCount, again.notes)
	}
	var st2 unix.Stat_t
	unix.Lstat(filepath.Join(root, "home/node/.profile"), &st2)
	if st1.Ctim != st2.Ctim {
		t.Errorf("second run changed the inode of .profile (ctime %v -> %v)", st1.Ctim, st2.Ctim)
	}
	for f, b := range before {
		if got := read(t, filepath.Join(root, f)); got != b {
			t.Errorf("second run changed %s", f)
		}
	}
}

func TestTakenIDs(t *testing.T) {
	tests := []struct {
		name       string
		user       string
		work       [2]int
		wantPasswd []string // lines that must be there
		wantGroup  []string
		wantGID    uint32
		notes      []string // substrings
	}{
		{
			name: "uid and gid of another account", user: "node", work: [2]int{33, 33},
			wantPasswd: []string{"node:x:33:33:node:/home/node:/bin/sh", "www-data:x:10000:33:"},
			wantGroup:  []string{"www-data:x:33:", "node:x:1000:"},
			wantGID:    33,
			notes:      []string{"uid 33 belonged to www-data, which now has uid 10000", "the existing group www-data"},
		},
		{
			name: "own group shared as another's primary", user: "app", work: [2]int{1300, 1300},
			// app's primary group is users (100), which is not app's
			// own: a new group named app is made.
			wantPasswd: []string{"app:x:1300:1300::/home/app:/bin/sh"},
			wantGroup:  []string{"users:x:100:", "app:x:1300:"},
			wantGID:    1300,
			notes:      []string{"new group app"},
		},
		{
			name: "own group takes the new gid", user: "node", work: [2]int{1000, 2500},
			wantPasswd: []string{"node:x:1000:2500:"},
			wantGroup:  []string{"node:x:2500:"},
			wantGID:    2500,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, tc.work[0], tc.work[1])
			tg, err := prepareIn(t, root, nil, "--user", tc.user, "--match", "/work")
			if err != nil {
				t.Fatal(err)
			}
			passwd, group := read(t, filepath.Join(root, "etc/passwd")), read(t, filepath.Join(root, "etc/group"))
			for _, l := range tc.wantPasswd {
				if !strings.Contains(passwd, l) {
					t.Errorf("/etc/passwd lacks %q:\n%s", l, passwd)
				}
			}
			for _, l := range tc.wantGroup {
				if !strings.Contains(group, l) {
					t.Errorf("/etc/group lacks %q:\n%s", l, group)
				}
			}
			if tg.gid != tc.wantGID {
				t.Errorf("gid %d, want %d", tg.gid, tc.wantGID)
			}
			joined := strings.Join(tg.notes, "\n")
			for _, n := range tc.notes {
				if !strings.Contains(joined, n) {
					t.Errorf("notes lack %q:\n%s", n, joined)
				}
			}
		})
	}
}

func TestDockerSocketGroup(t *testing.T) {
	tests := []struct {
		name      string
		gid       int
		mode      os.FileMode
		wantGroup string
		wantIn    bool
	}{
		{"no group with the gid", 499, 0o660, "docker-host:x:499:node", true},
		{"an existing group is reused", 1500, 0o660, "app-friends:x:1500:app,node", true},
		{"root's group is never joined", 0, 0o660, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, 1000, 1000)
			sock := filepath.Join(root, "var/run/docker.sock")
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := unix.Bind(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(sock, 0, tc.gid); err != nil {
				t.Fatal(err)
			}
			os.Chmod(sock, tc.mode)
			tg, err := prepareIn(t, root, []uint32{0, 10, 4321}, "--user", "node")
			if err != nil {
				t.Fatal(err)
			}
			group := read(t, filepath.Join(root, "etc/group"))
			if tc.wantGroup != "" && !strings.Contains(group, tc.wantGroup+"\n") {
				t.Errorf("/etc/group lacks %q:\n%s", tc.wantGroup, group)
			}
			// 0 and wheel (10, root is a member) are root's own; 4321 came
			// from --group-add and stays.
			want := []uint32{1000, 2000, 4321}
			if tc.wantIn {
				want = append(want, uint32(tc.gid))
			}
			if got := slices.Sorted(slices.Values(tg.groups)); tg.groups[0] != 1000 || !slices.Equal(got, slices.Sorted(slices.Values(want))) {
				t.Errorf("groups %v, want the primary gid first, then %v in any order", tg.groups, want[1:])
			}
			if fi, _ := os.Stat(sock); fi.Mode().Perm() != tc.mode {
				t.Errorf("the socket's mode changed to %v", fi.Mode().Perm())
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing match", []string{"--user", "node", "--match", "/nope"}, "--match /nope: no such file or directory"},
		{"unknown user", []string{"--user", "ghost"}, `user "ghost": no such account in `},
		{"unknown group", []string{"--user", "node:ghosts"}, `group "ghosts": no such group in `},
		{"root by match", []string{"--user", "node", "--match", "/etc"}, "refusing to run the command as root: /etc is owned by uid 0"},
		{"root by name", []string{"--user", "root"}, "refusing to run the command as root: user root is uid 0"},
		{"root's own ids", []string{"--user", "root", "--match", "/work"}, "user root is root (uid 0): volperm does not give root other ids"},
		{"root by --uid", []string{"--user", "node", "--uid", "0"}, "refusing to run the command as root: --uid 0 was given"},
		{"missing chown tree", []string{"--user", "node", "--uid", "1300", "--chown", "/srv"}, "--chown /srv: no such file or directory"},
		{"explicit socket missing", []string{"--user", "node", "--docker-socket", "/run/d.sock"}, "--docker-socket /run/d.sock: no such file"},
		{"explicit socket is a directory", []string{"--user", "node", "--docker-socket", "/work"}, "is a directory, not a socket"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, 1000, 1000)
			_, err := prepareIn(t, root, nil, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if read(t, filepath.Join(root, "etc/passwd")) != testPasswd || read(t, filepath.Join(root, "etc/group")) != testGroup {
				t.Error("a refused run edited /etc")
			}
			if got := owner(t, filepath.Join(root, "home/node/.profile")); got != [2]uint32{1000, 1000} {
				t.Errorf("a refused run re-owned the home: %v", got)
			}
		})
	}
	t.Run("root when allowed", func(t *testing.T) {
		root := fakeRoot(t, 0, 0)
		tg, err := prepareIn(t, root, nil, "--user", "node", "--match", "/work", "--allow-root")
		if err != nil || tg.uid != 0 {
			t.Fatalf("--allow-root: %+v %v", tg, err)
		}
	})
}

// A read-only /etc (a container started with --read-only) fails before
// anything changed: the home is not re-owned either.
func TestReadOnlyEtc(t *testing.T) {
	root := fakeRoot(t, 1234, 1234)
	etc := filepath.Join(root, "etc")
	if err := unix.Mount(etc, etc, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(etc, unix.MNT_DETACH) })
	if err := unix.Mount("", etc, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	_, err := prepareIn(t, root, nil, "--user", "node", "--match", "/work")
	if err == nil || !strings.Contains(err.Error(), "read-only file system") {
		t.Fatalf("error %v, want a read-only file system", err)
	}
	if got := owner(t, filepath.Join(root, "home/node/.profile")); got != [2]uint32{1000, 1000} {
		t.Errorf("the home was re-owned although /etc could not be edited: %v", got)
	}
}

// An interruption between the two renames leaves both files old: the
// first is put back. Every failure point is tried.
func TestInterruptedCommit(t *testing.T) {
	for failAt := range 2 {
		root := fakeRoot(t, 1234, 1234)
		p := &preparer{root: root, commit: func(files ...*etcFile) (pending, error) {
			pd, err := writePair(files...)
			if err != nil {
				return nil, err
			}
			n := 0
			pd.(*pendingFiles).rename = func(from, to string) error {
				if n == failAt {
					return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.EIO}
				}
				n++
				return os.Rename(from, to)
			}
			return pd, nil
		}}
		_, err := p.prepare(context.Background(), opts(t, "--user", "node", "--match", "/work"))
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("rename %d failing: error %v, want EIO", failAt, err)
		}
		if read(t, filepath.Join(root, "etc/passwd")) != testPasswd || read(t, filepath.Join(root, "etc/group")) != testGroup {
			t.Errorf("rename %d failing: /etc is half edited", failAt)
		}
		left, _ := filepath.Glob(filepath.Join(root, "etc", ".*volperm*"))
		if len(left) > 0 {
			t.Errorf("rename %d failing: temporary files left: %v", failAt, left)
		}
	}
}

func TestEnv(t *testing.T) {
	tg := &target{name: "node", uid: 1234, home: "/home/node"}
	got := tg.env([]string{"PATH=/bin", "HOME=/root", "USER=root", "X=1"})
	want := []string{"PATH=/bin", "X=1", "HOME=/home/node", "USER=node", "LOGNAME=node"}
	if !slices.Equal(got, want) {
		t.Errorf("env %q, want %q", got, want)
	}
	tg = &target{uid: 4321, home: "/"}
	if got := tg.env(nil); !slices.Equal(got, []string{"HOME=/", "USER=4321", "LOGNAME=4321"}) {
		t.Errorf("env without an account: %q", got)
	}
}

func TestNumericUserWithoutAccount(t *testing.T) {
	root := fakeRoot(t, 1000, 1000)
	tg, err := prepareIn(t, root, nil, "--user", "4321")
	if err != nil {
		t.Fatal(err)
	}
	// As docker run --user 4321: group 0, home /.
	if tg.uid != 4321 || tg.gid != 0 || tg.home != "/" || tg.name != "" {
		t.Errorf("target %+v", tg)
	}
	if read(t, filepath.Join(root, "etc/passwd")) != testPasswd {
		t.Error("/etc/passwd edited for a uid without an account")
	}
}

// A home that is a mount holds files that are not the image's (a host
// directory bind-mounted as the home): they are left alone unless
// --chown names it.
func TestHomeMountNotReowned(t *testing.T) {
	root := fakeRoot(t, 1234, 1234)
	home := filepath.Join(root, "home/node")
	if err := unix.Mount("tmpfs", home, "tmpfs", 0, "mode=0755,uid=1000,gid=1000"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(home, unix.MNT_DETACH) })
	write(t, filepath.Join(home, "host-file"), "x", 0o644)
	os.Chown(filepath.Join(home, "host-file"), 1000, 1000)
	tg, err := prepareIn(t, root, nil, "--user", "node", "--match", "/work")
	if err != nil {
		t.Fatal(err)
	}
	if got := owner(t, filepath.Join(home, "host-file")); got != [2]uint32{1000, 1000} {
		t.Errorf("a file in a mounted home was re-owned to %v", got)
	}
	if !strings.Contains(strings.Join(tg.notes, "\n"), "home /home/node is a mount: not re-owned") {
		t.Errorf("notes %q", tg.notes)
	}
	// Named with --chown, it is re-owned.
	root2 := fakeRoot(t, 1234, 1234)
	home2 := filepath.Join(root2, "home/node")
	if err := unix.Mount("tmpfs", home2, "tmpfs", 0, "mode=0755,uid=1000,gid=1000"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(home2, unix.MNT_DETACH) })
	if _, err := prepareIn(t, root2, nil, "--user", "node", "--match", "/work", "--chown", "/home/node"); err != nil {
		t.Fatal(err)
	}
	if got := owner(t, home2); got != [2]uint32{1234, 1234} {
		t.Errorf("--chown of the mounted home: %v", got)
	}
}

// An account whose home field is empty runs with HOME=/, and nothing
// outside --chown trees is re-owned: not the whole root filesystem.
func TestEmptyHome(t *testing.T) {
	root := fakeRoot(t, 1234, 1234)
	write(t, filepath.Join(root, "etc/passwd"), strings.Replace(testPasswd, "node:x:1000:1000:node:/home/node:", "node:x:1000:1000:node::", 1), 0o644)
	tg, err := prepareIn(t, root, nil, "--user", "node", "--match", "/work")
	if err != nil {
		t.Fatal(err)
	}
	if tg.home != "/" || tg.chownCount != 0 {
		t.Errorf("home %q, re-owned %d", tg.home, tg.chownCount)
	}
	if got := owner(t, filepath.Join(root, "home/node/.profile")); got != [2]uint32{1000, 1000} {
		t.Errorf("re-owned outside any home: %v", got)
	}
}

// With --allow-root and a root-owned --match path, the command runs as
// root; no account takes uid 0 and root keeps it.
func TestAllowRootKeepsAccounts(t *testing.T) {
	root := fakeRoot(t, 0, 0)
	tg, err := prepareIn(t, root, nil, "--user", "node", "--match", "/work", "--allow-root")
	if err != nil {
		t.Fatal(err)
	}
	if tg.uid != 0 || tg.name != "root" || tg.home != "/root" {
		t.Errorf("target %+v, want root", tg)
	}
	if read(t, filepath.Join(root, "etc/passwd")) != testPasswd {
		t.Errorf("/etc/passwd edited:\n%s", read(t, filepath.Join(root, "etc/passwd")))
	}
}

// Mounts below the home are not the image's: a directory bind-mounted
// from the same filesystem and a single file bind-mounted from another
// are both left alone, while the rest of the home is re-owned.
func TestMountsUnderHomeLeftAlone(t *testing.T) {
	root := fakeRoot(t, 1234, 1234)
	home := filepath.Join(root, "home/node")
	// The same device: a directory elsewhere in the root, bound under the home.
	src := filepath.Join(root, "var/www")
	write(t, filepath.Join(src, "host-file"), "x", 0o644)
	os.Lchown(filepath.Join(src, "host-file"), 1000, 1000)
	os.Lchown(src, 1000, 1000)
	bindAt(t, src, filepath.Join(home, ".cache"))
	// Another device: a file on a tmpfs, bound onto a file of the home.
	tmp := t.TempDir()
	if err := unix.Mount("tmpfs", tmp, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(tmp, unix.MNT_DETACH) })
	write(t, filepath.Join(tmp, "gitconfig"), "x", 0o644)
	os.Lchown(filepath.Join(tmp, "gitconfig"), 1000, 1000)
	bindAt(t, filepath.Join(tmp, "gitconfig"), filepath.Join(home, ".profile"))

	if _, err := prepareIn(t, root, nil, "--user", "node", "--match", "/work"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".cache", ".cache/host-file", ".profile"} {
		if got := owner(t, filepath.Join(home, p)); got != [2]uint32{1000, 1000} {
			t.Errorf("%s, a mount under the home, was re-owned to %v", p, got)
		}
	}
	if got := owner(t, filepath.Join(home, "suid")); got != [2]uint32{1234, 1234} {
		t.Errorf("the home's own file is %v, want 1234:1234", got)
	}
}

func bindAt(t *testing.T, src, dst string) {
	t.Helper()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
}

// A bind-mounted /etc/passwd cannot be replaced: said before anything is
// re-owned.
func TestMountedPasswd(t *testing.T) {
	root := fakeRoot(t, 1234, 1234)
	host := filepath.Join(t.TempDir(), "passwd")
	write(t, host, testPasswd, 0o644)
	bindAt(t, host, filepath.Join(root, "etc/passwd"))
	_, err := prepareIn(t, root, nil, "--user", "node", "--match", "/work")
	if err == nil || !strings.Contains(err.Error(), "/etc/passwd is a mount (bind-mounted into the container): volperm cannot replace it") {
		t.Fatalf("error %v", err)
	}
	if got := owner(t, filepath.Join(root, "home/node/.profile")); got != [2]uint32{1000, 1000} {
		t.Errorf("re-owned before the refusal: %v", got)
	}
	if read(t, host) != testPasswd {
		t.Error("the host's passwd was edited")
	}
}

// A primary group that is not the account's own (users, 100) keeps its
// files: only the account's uid moves them.
func TestSharedGroupFilesKept(t *testing.T) {
	root := fakeRoot(t, 1300, 1300)
	f := filepath.Join(root, "home/app/by-root")
	write(t, f, "x", 0o644)
	os.Lchown(f, 0, 100)
	if _, err := prepareIn(t, root, nil, "--user", "app", "--match", "/work"); err != nil {
		t.Fatal(err)
	}
	if got := owner(t, f); got != [2]uint32{0, 100} {
		t.Errorf("root's file of group users became %v", got)
	}
	if got := owner(t, filepath.Join(root, "home/app")); got != [2]uint32{1300, 100} {
		t.Errorf("app's home is %v, want 1300:100 (uid moved, shared group kept)", got)
	}
}

func TestParseMountInfo(t *testing.T) {
	m := parseMountInfo([]byte("36 35 98:0 /mnt1 /mnt/with\\040space rw - ext3 /dev/root rw\n37 35 0:1 / / rw - ext4 x rw\nshort\n"))
	if !m["/mnt/with space"] || !m["/"] || len(m) != 2 {
		t.Errorf("%v", m)
	}
}
