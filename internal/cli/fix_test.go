package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/volperm/volperm/internal/testenv"
)

// runWorkload runs a doctor workload as docker compose would: its user,
// group_add, userns_mode and bind mounts (plus extra binds), with cmd.
func runWorkload(t *testing.T, d *testenv.Daemon, img string, w jsonWorkload, extra []string, cmd ...string) (string, bool) {
	t.Helper()
	o := testenv.RunOpts{User: w.UserSpec, GroupAdd: w.GroupAdd, UsernsMode: w.UsernsMode, Cmd: cmd}
	for _, m := range w.Mounts {
		if m.Type != "bind" {
			continue
		}
		b := m.Source + ":" + m.Target
		if m.ReadOnly {
			b += ":ro"
		}
		o.Binds = append(o.Binds, b)
	}
	o.Binds = append(o.Binds, extra...)
	out, code := d.Run(t, img, o)
	return out, code == 0
}

func workloadNamed(t *testing.T, r doctorJSON, name string) jsonWorkload {
	t.Helper()
	for _, w := range r.Workloads {
		if w.Name == name {
			return w
		}
	}
	t.Fatalf("no workload %s in %+v", name, r.Workloads)
	return jsonWorkload{}
}

// ctimes records the change times of every path under dirs.
func ctimes(t *testing.T, paths ...string) map[string]syscall.Timespec {
	t.Helper()
	out := map[string]syscall.Timespec{}
	for _, root := range paths {
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil {
				out[p] = fi.Sys().(*syscall.Stat_t).Ctim
			}
			return nil
		})
	}
	return out
}

type fixCase struct {
	name   string
	id     string
	remap  bool
	setup  func(t *testing.T, img string) (dir string) // a fresh project with the problem
	works  func(t *testing.T, d *testenv.Daemon, img string, r doctorJSON) (string, bool)
	always bool     // the problem does not stop the container (VP104): only doctor changes
	args   []string // extra doctor/fix arguments
}

// TestFixEveryFinding: for every finding kind with an automatic fix, the
// printed plan run with sh, and fix --apply on a fresh copy, each make
// doctor clean for it and the real container succeed where it failed; a
// second --apply changes nothing, not even a ctime.
func TestFixEveryFinding(t *testing.T) {
	testenv.NeedRoot(t)
	plain := testenv.NeedDocker(t)
	testenv.EnsureUser(t, remapUser)
	hostUser := testenv.EnsureUser(t, "vphostuser")
	ping := testenv.PingBinary(t)
	sock := "/var/run/docker.sock"
	simple := func(user, volume string, prep func(dir string)) func(t *testing.T, img string) string {
		return func(t *testing.T, img string) string {
			dir := project(t, fmt.Sprintf("services:\n  app:\n    image: %s\n    user: %q\n    volumes:\n      - %s\n", img, user, volume))
			if prep != nil {
				prep(dir)
			}
			return dir
		}
	}
	touch := func(t *testing.T, d *testenv.Daemon, img string, r doctorJSON) (string, bool) {
		return runWorkload(t, d, img, workloadNamed(t, r, "app"), nil, "touch", "/data/probe")
	}
	cases := []fixCase{
		{name: "VP101 missing log dir", id: "VP101", setup: simple("node", "./logs:/data", nil), works: touch},
		{name: "VP102 root-owned dir, owner fix", id: "VP102", setup: simple("1000", "./data:/data", func(dir string) {
			mkdirOwned(t, filepath.Join(dir, "data"), 0, 0, 0o755)
		}), works: touch},
		{name: "VP102 host user's dir, ACL fix", id: "VP102", setup: simple("1000", "./data:/data", func(dir string) {
			mkdirOwned(t, filepath.Join(dir, "data"), int(hostUser), int(hostUser), 0o755)
		}), works: touch},
		{name: "VP103 unreadable read-only source", id: "VP103", setup: simple("1000", "./data:/data:ro", func(dir string) {
			mkdirOwned(t, filepath.Join(dir, "data"), 0, 0, 0o700)
		}), works: func(t *testing.T, d *testenv.Daemon, img string, r doctorJSON) (string, bool) {
			return runWorkload(t, d, img, workloadNamed(t, r, "app"), nil, "ls", "/data")
		}},
		{name: "VP104 world-writable", id: "VP104", always: true, setup: simple("1000", "./data:/data", func(dir string) {
			mkdirOwned(t, filepath.Join(dir, "data"), 0, 0, 0o777)
		}), works: touch},
		{name: "VP105 host-owned source under remap", id: "VP105", remap: true, setup: simple("0", "./data:/data", func(dir string) {
			mkdirOwned(t, filepath.Join(dir, "data"), 1000, 1000, 0o755)
		}), works: touch},
		{name: "VP202 socket gid", id: "VP202", setup: simple("1000", sock+":/var/run/docker.sock", nil),
			works: func(t *testing.T, d *testenv.Daemon, img string, r doctorJSON) (string, bool) {
				return runWorkload(t, d, img, workloadNamed(t, r, "app"), []string{ping + ":/ping:ro"}, "/ping")
			}},
		{name: "VP204 socket under remap", id: "VP204", remap: true, setup: simple("0", sock+":/var/run/docker.sock", nil),
			works: func(t *testing.T, d *testenv.Daemon, img string, r doctorJSON) (string, bool) {
				return runWorkload(t, d, img, workloadNamed(t, r, "app"), []string{ping + ":/ping:ro"}, "/ping")
			}},
		{name: "VP402 shared directory", id: "VP402", setup: func(t *testing.T, img string) string {
			dir := project(t, fmt.Sprintf("services:\n  web:\n    image: %s\n    user: \"1000:1000\"\n    volumes: [\"./run:/data\"]\n  worker:\n    image: %s\n    user: \"33:33\"\n    volumes: [\"./run:/data\"]\n", img, img))
			mkdirOwned(t, filepath.Join(dir, "run"), 1000, 1000, 0o755)
			return dir
		}, works: func(t *testing.T, d *testenv.Daemon, img string, r doctorJSON) (string, bool) {
			run := workloadNamed(t, r, "web").Mounts[0].Source
			os.Remove(filepath.Join(run, "shared"))
			if out, ok := runWorkload(t, d, img, workloadNamed(t, r, "web"), nil, "touch", "/data/shared"); !ok {
				return out, false
			}
			return runWorkload(t, d, img, workloadNamed(t, r, "worker"), nil, "sh", "-c", "echo x >> /data/shared")
		}},
	}
	victims, err := os.MkdirTemp("/usr/local/lib", "vp-victim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(victims) })
	sockMode := func() os.FileMode { st, _ := os.Stat(sock); return st.Mode().Perm() }
	origSock := sockMode()
	t.Cleanup(func() { os.Chmod(sock, origSock) })
	cases = append(cases,
		fixCase{name: "VP301 container root writes a system path", id: "VP301", setup: func(t *testing.T, img string) string {
			victim, _ := os.MkdirTemp(victims, "v")
			os.WriteFile(filepath.Join(victim, "touch.bak"), []byte("x"), 0o755)
			return project(t, fmt.Sprintf("services:\n  app:\n    image: %s\n    volumes:\n      - %s:/host\n", img, victim))
		}, works: func(t *testing.T, d *testenv.Daemon, img string, r doctorJSON) (string, bool) {
			w := workloadNamed(t, r, "app")
			out, _ := runWorkload(t, d, img, w, nil, "rm", "-f", "/host/touch.bak")
			_, err := os.Stat(filepath.Join(w.Mounts[0].Source, "touch.bak"))
			return out, err == nil // works: the host file survives
		}},
		fixCase{name: "VP203 chmod 666 socket", id: "VP203", args: []string{"--host"}, setup: func(t *testing.T, img string) string {
			os.Chmod(sock, 0o666)
			return project(t, "")
		}, works: func(t *testing.T, d *testenv.Daemon, img string, r doctorJSON) (string, bool) {
			cmd := exec.Command(ping, sock)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4321, Gid: 4321}}
			out, err := cmd.CombinedOutput()
			return string(out), err != nil // works: strangers are refused
		}},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := plain
			if tc.remap {
				d = testenv.RemapDaemon(t, testenv.Layout{User: remapUser, SubUID: []string{"vpmap:100000:65536"}, SubGID: []string{"vpmap:100000:65536"}})
			}
			img := testenv.Image(t, d)

			// The problem is real.
			dir := tc.setup(t, img)
			r, _ := doctor(t, d.Host, dir, tc.args...)
			if len(findingsOf(r, tc.id)) == 0 {
				t.Fatalf("doctor does not find %s: %+v", tc.id, r.Findings)
			}
			if out, ok := tc.works(t, d, img, r); ok != tc.always {
				t.Fatalf("before any fix the container succeeded=%v (want %v): %s", ok, tc.always, out)
			}

			for _, mode := range []string{"script", "apply"} {
				dir := tc.setup(t, img)
				var stdout, stderr string
				var code int
				wd, _ := os.Getwd()
				os.Chdir(dir)
				if mode == "script" {
					stdout, stderr, code = runCLI(t, d.Host, append([]string{"fix"}, tc.args...)...)
				} else {
					stdout, stderr, code = runCLI(t, d.Host, append([]string{"fix", "--apply"}, tc.args...)...)
				}
				os.Chdir(wd)
				if code != 0 {
					t.Fatalf("%s: fix exit %d: %s%s", mode, code, stdout, stderr)
				}
				if worldOpen.MatchString(stdout) {
					t.Fatalf("%s: the plan opens something to everyone:\n%s", mode, stdout)
				}
				if mode == "script" {
					sh := exec.Command("sh", "-e")
					sh.Dir, sh.Stdin = dir, strings.NewReader(stdout)
					if out, err := sh.CombinedOutput(); err != nil {
						t.Fatalf("running the printed plan: %v\n%s\n--- plan:\n%s", err, out, stdout)
					}
				}
				r, _ := doctor(t, d.Host, dir, tc.args...)
				none(t, r, tc.id)
				if out, ok := tc.works(t, d, img, r); !ok {
					t.Fatalf("%s: after the fix the container still fails: %s\n--- fix output:\n%s", mode, out, stdout)
				}
				if mode == "apply" {
					before := ctimes(t, dir)
					os.Chdir(dir)
					again, _, code := runCLI(t, d.Host, append([]string{"fix", "--apply"}, tc.args...)...)
					os.Chdir(wd)
					if code != 0 || !strings.Contains(again, "nothing changed") {
						t.Fatalf("a second --apply: exit %d\n%s", code, again)
					}
					after := ctimes(t, dir)
					for p, c := range before {
						if after[p] != c {
							t.Errorf("a second --apply changed the ctime of %s", p)
						}
					}
				}
			}
		})
	}
}

// TestFixRefusals: nothing half-changed, clear messages.
func TestFixRefusals(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "mount")

	t.Run("read-only filesystem", func(t *testing.T) {
		dir := project(t, "services:\n  app:\n    image: x\n    user: \"1000:1000\"\n    volumes: [\"./data:/data\"]\n")
		data := filepath.Join(dir, "data")
		mkdirOwned(t, data, 0, 0, 0o755)
		mustRun(t, "mount", "--bind", data, data)
		t.Cleanup(func() { exec.Command("umount", data).Run() })
		mustRun(t, "mount", "-o", "remount,ro,bind", data)
		wd, _ := os.Getwd()
		os.Chdir(dir)
		defer os.Chdir(wd)
		stdout, _, code := runCLI(t, "unix:///nonexistent.sock", "fix", "--apply")
		if code != ExitFindings || !strings.Contains(stdout, "mounted read-only (EROFS)") {
			t.Fatalf("exit %d:\n%s", code, stdout)
		}
		if st, _ := os.Stat(data); ownerUID(st) != 0 {
			t.Fatal("the owner changed on a read-only mount")
		}
	})

	t.Run("no ACL support", func(t *testing.T) {
		// ramfs has no extended attributes, so no POSIX ACLs.
		dir := t.TempDir()
		mustRun(t, "mount", "-t", "ramfs", "ramfs", dir)
		t.Cleanup(func() { exec.Command("umount", dir).Run() })
		_, stderr, code := runCLI(t, "unix:///nonexistent.sock", "grant", dir, "--user", "1234")
		if code != ExitFindings || !strings.Contains(stderr, "does not support POSIX ACLs (EOPNOTSUPP)") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Fatalf("exit %d: %q", code, stderr)
		}
	})

	t.Run("symlink to elsewhere", func(t *testing.T) {
		dir := t.TempDir()
		link := filepath.Join(dir, "data")
		if err := os.Symlink("/etc", link); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := runCLI(t, "unix:///nonexistent.sock", "grant", link, "--user", "1234", "--recursive")
		if code != ExitFindings || !strings.Contains(stderr, "is a symlink (to /etc): refusing") {
			t.Fatalf("exit %d: %q", code, stderr)
		}
		if out, _ := exec.Command("getfacl", "-n", "/etc").Output(); strings.Contains(string(out), "1234") {
			t.Fatal("/etc got an ACL entry through the symlink")
		}
		proj := project(t, "services:\n  app:\n    image: x\n    user: \"1000:1000\"\n    volumes: [\"./data:/data\"]\n")
		if err := os.Symlink("/etc", filepath.Join(proj, "data")); err != nil {
			t.Fatal(err)
		}
		wd, _ := os.Getwd()
		os.Chdir(proj)
		defer os.Chdir(wd)
		stdout, _, code := runCLI(t, "unix:///nonexistent.sock", "fix", "--apply")
		if code != ExitFindings || !strings.Contains(stdout, "refusing") {
			t.Fatalf("fix through a symlink: exit %d:\n%s", code, stdout)
		}
	})
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// asHost runs a shell command on the host as uid:gid (no supplementary
// groups) and reports success.
func asHost(uid uint32, script string) (string, bool) {
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// TestGrantSeed004 is seed 004's last step: files a remapped container
// wrote as www-data (host 100033) must be editable by the host user,
// without chown and without opening them to others.
func TestGrantSeed004(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "getfacl")
	testenv.EnsureUser(t, remapUser)
	hostUser := testenv.EnsureUser(t, "vphostuser")
	d := testenv.RemapDaemon(t, testenv.Layout{User: remapUser, SubUID: []string{"vpmap:100000:65536"}, SubGID: []string{"vpmap:100000:65536"}})
	img := testenv.Image(t, d)
	base, err := os.MkdirTemp("", "vp-grant-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	data := filepath.Join(base, "data")
	mkdirOwned(t, data, 100033, 100033, 0o755)
	if out, code := d.Run(t, img, testenv.RunOpts{User: "33:33", Binds: []string{data + ":/data"}, Cmd: []string{"sh", "-c", "mkdir -p /data/sub && echo log > /data/sub/app.log && echo '#!/bin/sh' > /data/run.sh && chmod 0755 /data/run.sh"}}); code != 0 {
		t.Fatalf("www-data could not write: %s", out)
	}
	if st, _ := os.Stat(filepath.Join(data, "sub", "app.log")); st.Sys().(*syscall.Stat_t).Uid != 100033 {
		t.Fatal("the container's file is not owned by host 100033")
	}
	if out, ok := asHost(hostUser, "echo edit >> "+filepath.Join(data, "sub", "app.log")); ok {
		t.Fatalf("the host user could edit before the grant: %s", out)
	}
	outside := filepath.Join(base, "outside")
	os.WriteFile(outside, nil, 0o644)
	os.Symlink(outside, filepath.Join(data, "link"))

	stdout, stderr, code := runCLI(t, "unix:///nonexistent.sock", "grant", data, "--user", "vphostuser", "--recursive", "--default")
	if code != 0 || !strings.Contains(stdout, "4 changed") {
		t.Fatalf("grant: exit %d: %s%s", code, stdout, stderr)
	}
	if out, ok := asHost(hostUser, "echo edit >> "+filepath.Join(data, "sub", "app.log")); !ok {
		t.Fatalf("the host user still cannot edit after the grant: %s", out)
	}
	facl, _ := exec.Command("getfacl", "-n", "-p", filepath.Join(data, "sub", "app.log"), filepath.Join(data, "run.sh"), filepath.Join(data, "sub")).Output()
	for _, want := range []string{fmt.Sprintf("user:%d:rw-", hostUser), fmt.Sprintf("user:%d:rwx", hostUser), fmt.Sprintf("default:user:%d:rwx", hostUser), "other::r-x", "other::r--"} {
		if !strings.Contains(string(facl), want) {
			t.Errorf("getfacl lacks %q (capital X: rw- on the log, rwx on the script and dirs):\n%s", want, facl)
		}
	}
	if out, _ := exec.Command("getfacl", "-n", outside).Output(); strings.Contains(string(out), fmt.Sprint(hostUser)) {
		t.Error("the grant followed a symlink out of the tree")
	}
	// Idempotent: a second grant changes nothing.
	stdout, _, _ = runCLI(t, "unix:///nonexistent.sock", "grant", data, "--user", "vphostuser", "--recursive", "--default")
	if !strings.Contains(stdout, " 0 changed") {
		t.Errorf("second grant: %s", stdout)
	}
	// A file the container writes later inherits the default ACL.
	if out, code := d.Run(t, img, testenv.RunOpts{User: "33:33", Binds: []string{data + ":/data"}, Cmd: []string{"sh", "-c", "echo new > /data/sub/new.log"}}); code != 0 {
		t.Fatalf("%s", out)
	}
	if out, ok := asHost(hostUser, "echo edit >> "+filepath.Join(data, "sub", "new.log")); !ok {
		t.Fatalf("a file written after the grant is not editable: %s", out)
	}
	// Removable.
	if _, _, code := runCLI(t, "unix:///nonexistent.sock", "grant", data, "--user", "vphostuser", "--recursive", "--remove"); code != 0 {
		t.Fatal("remove failed")
	}
	if out, ok := asHost(hostUser, "echo edit >> "+filepath.Join(data, "sub", "app.log")); ok {
		t.Fatalf("the host user can still edit after --remove: %s", out)
	}
	if out, _ := exec.Command("getfacl", "-R", "-n", "-p", data).Output(); strings.Contains(string(out), fmt.Sprintf(":%d:", hostUser)) {
		t.Errorf("--remove left entries:\n%s", out)
	}
}

// TestFixRemapWillNotStart: VP302's fix (the missing /etc/subuid line)
// lets the real dockerd start with that configuration.
func TestFixRemapWillNotStart(t *testing.T) {
	testenv.NeedRoot(t)
	plain := testenv.NeedDocker(t)
	testenv.EnsureUser(t, remapUser)
	cfg := filepath.Join(t.TempDir(), "daemon.json")
	os.WriteFile(cfg, []byte(`{"userns-remap": "vpmap"}`), 0o644)
	broken := testenv.Layout{SubUID: []string{"other:100000:65536"}, SubGID: []string{"vpmap:100000:65536"}}
	out := testenv.StartDaemonExpectFailure(t, broken, "--config-file", cfg)
	if !strings.Contains(out, `no subuid ranges found for user "vpmap"`) {
		t.Fatalf("dockerd said:\n%s", out)
	}
	stdout, stderr, code := runCLI(t, plain.Host, "fix", "--apply", "--host", "--daemon-config", cfg)
	if code != 0 || !strings.Contains(stdout, "changed  VP302") {
		t.Fatalf("fix: exit %d\n%s%s", code, stdout, stderr)
	}
	r, _ := doctor(t, plain.Host, t.TempDir(), "--host", "--daemon-config", cfg)
	none(t, r, "VP302")
	subuid, _ := os.ReadFile("/etc/subuid")
	subgid, _ := os.ReadFile("/etc/subgid")
	if !strings.Contains(string(subuid), "vpmap:165536:65536") || !strings.Contains(string(subuid), "other:100000:65536") {
		t.Fatalf("/etc/subuid after the fix:\n%s", subuid)
	}
	// The daemon now starts with exactly these files.
	fixed := testenv.Layout{User: remapUser, SubUID: strings.Fields(string(subuid)), SubGID: strings.Fields(string(subgid))}
	d := testenv.RemapDaemon(t, fixed)
	img := testenv.Image(t, d)
	dir := t.TempDir()
	os.Chmod(dir, 0o1777)
	if got := d.CreateAs(t, img, dir, []string{"0:0"}); got["0:0"].UID != 165536 {
		t.Fatalf("container root is host %d, want 165536 from the added line", got["0:0"].UID)
	}
}
