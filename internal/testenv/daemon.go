package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Layout is a userns-remap setup: the remap user (created when missing,
// with its own group) and the lines of /etc/subuid and /etc/subgid.
type Layout struct {
	User   string
	Group  string // optional: --userns-remap=User:Group
	SubUID []string
	SubGID []string
}

func (l Layout) spec() string {
	if l.Group != "" {
		return l.User + ":" + l.Group
	}
	return l.User
}

func (l Layout) key() string {
	return l.spec() + "|" + strings.Join(l.SubUID, ",") + "|" + strings.Join(l.SubGID, ",")
}

// state is the package's process-wide bookkeeping, so daemons are reused
// across tests and everything is undone at the end.
var state struct {
	sync.Mutex
	base     string            // short temp dir for sockets and data roots
	saved    map[string][]byte // original /etc/subuid, /etc/subgid (nil: absent)
	users    []string          // users this package created
	groups   []string
	running  *proc
	runKey   string
	daemon   *Daemon
	sigSetUp bool
}

type proc struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan error
}

func base(t testing.TB) string {
	if state.base == "" {
		d, err := os.MkdirTemp("/tmp", "vpd-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
		state.base = d
	}
	return state.base
}

// saveFiles keeps the originals of the files the layouts overwrite.
func saveFiles() {
	if state.saved != nil {
		return
	}
	state.saved = map[string][]byte{}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		data, err := os.ReadFile(f)
		if err != nil {
			data = nil
		}
		state.saved[f] = data
	}
	if !state.sigSetUp {
		state.sigSetUp = true
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-ch
			Cleanup()
			os.Exit(130)
		}()
	}
}

// writeAtomic replaces a file by rename, so a crash never leaves it
// truncated.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".vptest"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func ensureAccount(t testing.TB, name string, group bool) {
	if group {
		if exec.Command("getent", "group", name).Run() == nil {
			return
		}
		if out, err := exec.Command("groupadd", "-r", name).CombinedOutput(); err != nil {
			t.Fatalf("groupadd %s: %v\n%s", name, err, out)
		}
		state.groups = append(state.groups, name)
		return
	}
	if exec.Command("getent", "passwd", name).Run() == nil {
		return
	}
	// -K SUB_*_COUNT=0: Debian's useradd would otherwise add its own
	// ranges to /etc/subuid and /etc/subgid.
	if out, err := exec.Command("useradd", "-r", "-M", "-U", "-s", "/usr/sbin/nologin",
		"-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	state.users = append(state.users, name)
}

func (l Layout) install(t testing.TB) {
	saveFiles()
	ensureAccount(t, l.User, false)
	if l.Group != "" {
		ensureAccount(t, l.Group, true)
	}
	for f, lines := range map[string][]string{"/etc/subuid": l.SubUID, "/etc/subgid": l.SubGID} {
		if err := writeAtomic(f, []byte(strings.Join(lines, "\n")+"\n")); err != nil {
			t.Fatalf("writing %s: %v", f, err)
		}
	}
}

// start launches a second dockerd; it does not wait for it.
func start(t testing.TB, args ...string) (*proc, string, string) {
	b := base(t)
	sock := filepath.Join(b, "d.sock")
	_ = os.Remove(sock)
	all := append([]string{
		"--data-root", filepath.Join(b, "data"),
		"--exec-root", filepath.Join(b, "exec"),
		"-H", "unix://" + sock,
		"--pidfile", filepath.Join(b, "d.pid"),
		"--bridge=none", "--iptables=false", "--ip-masq=false",
	}, args...)
	if _, err := os.Stat("/run/containerd/containerd.sock"); err == nil {
		all = append(all, "--containerd=/run/containerd/containerd.sock")
	}
	cmd := exec.Command("dockerd", all...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		unavailable(t, "starting dockerd: %v", err)
	}
	p := &proc{cmd: cmd, log: &log, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, "unix://" + sock, filepath.Join(b, "data")
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RemapDaemon returns a second dockerd running with --userns-remap for the
// layout, reusing the running one when the layout is the same.
func RemapDaemon(t testing.TB, l Layout) *Daemon {
	t.Helper()
	NeedRoot(t)
	NeedCommand(t, "dockerd")
	state.Lock()
	defer state.Unlock()
	if state.running != nil && state.runKey == l.key() {
		return state.daemon
	}
	stopRunning()
	l.install(t)
	p, host, dataRoot := start(t, "--userns-remap="+l.spec())
	c, err := client.New(client.FromEnv, client.WithHost(host))
	if err != nil {
		p.stop()
		t.Fatal(err)
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = c.Ping(ctx, client.PingOptions{})
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-p.done:
			t.Fatalf("dockerd --userns-remap=%s exited (%v):\n%s", l.spec(), werr, tail(p.log.String(), 30))
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			t.Fatalf("dockerd --userns-remap=%s did not answer in 45s:\n%s", l.spec(), tail(p.log.String(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	state.running, state.runKey = p, l.key()
	state.daemon = &Daemon{Host: host, Client: c, DataRoot: dataRoot, PID: p.cmd.Process.Pid}
	return state.daemon
}

func stopRunning() {
	if state.running == nil {
		return
	}
	if state.daemon != nil {
		state.daemon.Client.Close()
		imgMu.Lock()
		delete(imgDone, state.daemon.Host)
		imgMu.Unlock()
	}
	state.running.stop()
	state.running, state.runKey, state.daemon = nil, "", nil
}

// StartDaemonExpectFailure starts a second dockerd with the layout in
// place and the given arguments (--userns-remap=User[:Group] unless an
// argument sets it), expects it to exit, and returns what it printed.
func StartDaemonExpectFailure(t testing.TB, l Layout, extraArgs ...string) string {
	t.Helper()
	NeedRoot(t)
	NeedCommand(t, "dockerd")
	state.Lock()
	defer state.Unlock()
	stopRunning()
	l.install(t)
	args := slices.Clone(extraArgs)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--userns-remap") }) {
		args = append(args, "--userns-remap="+l.spec())
	}
	p, _, _ := start(t, args...)
	select {
	case <-p.done:
		return p.log.String()
	case <-time.After(30 * time.Second):
		p.stop()
		t.Fatalf("dockerd %v kept running; expected it to refuse to start:\n%s", args, tail(p.log.String(), 30))
	}
	return ""
}

// Cleanup stops the daemons this package started and restores
// /etc/subuid, /etc/subgid and the accounts it created.
func Cleanup() {
	state.Lock()
	defer state.Unlock()
	stopRunning()
	for f, data := range state.saved {
		if data == nil {
			_ = os.Remove(f)
			continue
		}
		_ = writeAtomic(f, data)
	}
	state.saved = nil
	for _, u := range state.users {
		_ = exec.Command("userdel", u).Run()
	}
	for _, g := range state.groups {
		_ = exec.Command("groupdel", g).Run()
	}
	state.users, state.groups = nil, nil
	if state.base != "" {
		// Data roots hold overlay mounts only while a daemon runs.
		_ = os.RemoveAll(state.base)
		state.base = ""
	}
}

// Main is TestMain for packages that use this one.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// String describes the daemon for messages.
func (d *Daemon) String() string { return fmt.Sprintf("dockerd at %s", d.Host) }

// EnsureUser makes sure a host user (with its own group) exists, creating
// it for the rest of the test process when missing, and returns its uid.
func EnsureUser(t testing.TB, name string) uint32 {
	t.Helper()
	NeedRoot(t)
	state.Lock()
	defer state.Unlock()
	saveFiles()
	ensureAccount(t, name, false)
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		t.Fatalf("id -u %s: %v", name, err)
	}
	uid, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(uid)
}
