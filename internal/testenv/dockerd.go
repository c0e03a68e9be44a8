package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Layout is a userns-remap setup: the remap user and the exact lines of
// /etc/subuid and /etc/subgid.
type Layout struct {
	User   string   // the --userns-remap user; created (with its group) when missing
	Group  string   // optional: --userns-remap=User:Group; created when missing
	SubUID []string // the lines of /etc/subuid, for example "vptest:100000:65536"
	SubGID []string // the lines of /etc/subgid
	// Config, when set, is a daemon.json the daemon starts with instead of
	// --userns-remap: its "userns-remap" names the remap, as it would for
	// a daemon started by systemd. It must not set what testenv passes as
	// flags (data-root, exec-root, hosts, pidfile, bridge, iptables).
	Config string
}

// spec is the value of --userns-remap.
func (l Layout) spec() string {
	if l.Group != "" {
		return l.User + ":" + l.Group
	}
	return l.User
}

// key identifies a layout: a daemon is reused only for the same one.
func (l Layout) key() string { return fmt.Sprintf("%q", l) }

const (
	readyTimeout = 30 * time.Second // a remap daemon answers in well under a second here
	exitTimeout  = 30 * time.Second // a daemon expected to fail exits at once
	termTimeout  = 20 * time.Second // SIGTERM to exit; dockerd first stops its containers
)

// systemContainerd is used when present rather than a containerd per daemon.
const systemContainerd = "/run/containerd/containerd.sock"

// RemapDaemon returns a second dockerd running with --userns-remap for the
// layout, after writing the layout to /etc/subuid and /etc/subgid. The
// running one is reused when the layout is the same; only one runs at a
// time, so another layout stops it first. All remap daemons of a process
// share one data root, where dockerd keeps each remapped root pair in its
// own <uid>.<gid> directory. The daemon has its own image store: call
// Image(t, d) before running containers.
func RemapDaemon(t testing.TB, l Layout) *Daemon {
	t.Helper()
	NeedRoot(t)
	NeedCommand(t, "dockerd")
	if l.User == "" {
		t.Fatal("testenv: RemapDaemon needs a Layout.User")
	}
	state.Lock()
	defer state.Unlock()
	d, err := remapDaemon(t, l)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return d
}

func remapDaemon(t testing.TB, l Layout) (*Daemon, error) {
	t.Helper()
	// The files are rewritten even when the daemon is reused: a failure
	// test may have changed them since, and the code under test reads them.
	if err := installLayout(t, l); err != nil {
		return nil, err
	}
	if state.remap != nil && state.remapKey == l.key() {
		if err := ping(state.remapD.Client, 2*time.Second); err == nil {
			return state.remapD, nil
		}
		t.Logf("testenv: the running remap daemon stopped answering; starting a new one")
	}
	if err := stopRemap(); err != nil {
		return nil, err
	}
	base, err := baseDir()
	if err != nil {
		return nil, err
	}
	dataRoot := filepath.Join(base, "d")
	start := time.Now()
	args := []string{"--userns-remap=" + l.spec()}
	if l.Config != "" {
		args = []string{"--config-file", l.Config}
	}
	p, err := startDockerd(dataRoot, args...)
	if err != nil {
		return nil, err
	}
	cli, err := client.New(client.WithHost(p.host))
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("creating a client for %s: %w", p.host, err)
	}
	if err := p.waitReady(cli); err != nil {
		cli.Close()
		p.stop()
		return nil, fmt.Errorf("starting dockerd %s: %w", strings.Join(args, " "), err)
	}
	t.Logf("testenv: dockerd %s (pid %d) answered after %v", strings.Join(args, " "), p.cmd.Process.Pid, time.Since(start).Round(time.Millisecond))
	d := &Daemon{Host: p.host, Client: cli, DataRoot: dataRoot, PID: p.cmd.Process.Pid}
	state.remap, state.remapKey, state.remapD = p, l.key(), d
	return d, nil
}

// stopRemap stops the running remap daemon, if any.
func stopRemap() error {
	if state.remap == nil {
		return nil
	}
	state.remapD.Client.Close()
	err := state.remap.stop()
	state.remap, state.remapKey, state.remapD = nil, "", nil
	return err
}

// StartDaemonExpectFailure writes the layout's lines to /etc/subuid and
// /etc/subgid (even when it has no User), starts a second dockerd and
// expects it to exit without ever answering; it returns what the daemon
// printed (stdout and stderr, interleaved as written) and logs its exit
// status. The daemon gets
// --userns-remap=User[:Group] unless extraArgs set --userns-remap
// themselves or the layout has no User, and an empty configuration file
// unless extraArgs set --config-file. A remap daemon already running is
// left alone. A daemon that becomes ready instead is stopped and fails the
// test.
func StartDaemonExpectFailure(t testing.TB, l Layout, extraArgs ...string) string {
	t.Helper()
	NeedRoot(t)
	NeedCommand(t, "dockerd")
	state.Lock()
	defer state.Unlock()
	out, err := expectFailure(t, l, extraArgs)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return out
}

func expectFailure(t testing.TB, l Layout, extraArgs []string) (string, error) {
	t.Helper()
	if err := installLayout(t, l); err != nil {
		return "", err
	}
	args := slices.Clone(extraArgs)
	if l.User != "" && !hasFlag(args, "--userns-remap") {
		args = append([]string{"--userns-remap=" + l.spec()}, args...)
	}
	// Its own data root: a daemon that should fail must not touch the one
	// the remap daemons share.
	p, err := startDockerd("", args...)
	if err != nil {
		return "", err
	}
	cli, err := client.New(client.WithHost(p.host))
	if err != nil {
		p.stop()
		return "", fmt.Errorf("creating a client for %s: %w", p.host, err)
	}
	defer cli.Close()
	deadline := time.Now().Add(exitTimeout)
	for {
		select {
		case <-p.done:
			out, err := os.ReadFile(p.log)
			if err != nil {
				return "", fmt.Errorf("reading the daemon's output: %w", err)
			}
			t.Logf("testenv: dockerd %s exited: %v", strings.Join(args, " "), p.err)
			return string(out), nil
		case <-time.After(50 * time.Millisecond):
		}
		if ping(cli, time.Second) == nil {
			p.stop()
			return "", fmt.Errorf("dockerd %s became ready; it was expected to refuse to start:\n%s", strings.Join(args, " "), p.tail(30))
		}
		if time.Now().After(deadline) {
			p.stop()
			return "", fmt.Errorf("dockerd %s neither exited nor answered within %v:\n%s", strings.Join(args, " "), exitTimeout, p.tail(30))
		}
	}
}

// hasFlag reports whether args set the long flag name, as "name" (with the
// value in the next argument) or as "name=value".
func hasFlag(args []string, name string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == name || strings.HasPrefix(a, name+"=") })
}

// baseDir is this process's private directory. Its path is short because a
// unix socket path is limited to 108 bytes and dockerd puts containerd's
// sockets deep under the exec root; it is traversable (0711) because
// dockerd refuses a data root whose parents the remapped root cannot
// search.
func baseDir() (string, error) {
	if state.dir != "" {
		return state.dir, nil
	}
	dir, err := os.MkdirTemp("/tmp", "vpd-")
	if err != nil {
		return "", fmt.Errorf("creating the daemons' directory: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("opening up %s: %w", dir, err)
	}
	state.dir = dir
	// Recorded so that a process killed before its Cleanup has the
	// directory removed by the next one; host edits always come first.
	if state.host.lock != nil {
		state.host.journal.Dir = dir
		if err := writeJournal(); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// proc is a dockerd this package started.
type proc struct {
	cmd  *exec.Cmd
	host string        // "unix://" and its socket
	log  string        // the file with its stdout and stderr
	done chan struct{} // closed once it has exited
	err  error         // its exit status, once done is closed
}

// startDockerd starts a dockerd in a fresh directory of its own (exec
// root, socket, pid file, log) without waiting for it. An empty dataRoot
// puts the data root in that directory too.
func startDockerd(dataRoot string, args ...string) (*proc, error) {
	if state.interrupted {
		return nil, errInterrupted
	}
	base, err := baseDir()
	if err != nil {
		return nil, err
	}
	state.starts++
	dir := filepath.Join(base, strconv.Itoa(state.starts))
	if err := os.Mkdir(dir, 0o711); err != nil {
		return nil, fmt.Errorf("creating the daemon's directory: %w", err)
	}
	if dataRoot == "" {
		dataRoot = filepath.Join(dir, "d")
	}
	sock := filepath.Join(dir, "s")
	all := []string{
		"--data-root", dataRoot,
		"--exec-root", filepath.Join(dir, "e"),
		"-H", "unix://" + sock,
		"--pidfile", filepath.Join(dir, "p"),
		"--bridge=none", "--iptables=false", "--ip-masq=false",
	}
	if !hasFlag(args, "--config-file") {
		// Without it dockerd would read the host's /etc/docker/daemon.json,
		// which may set the same options as the flags (a fatal conflict)
		// or be what the code under test is editing.
		cfg := filepath.Join(dir, "daemon.json")
		if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", cfg, err)
		}
		all = append(all, "--config-file", cfg)
	}
	if _, err := os.Stat(systemContainerd); err == nil {
		// A shared containerd needs namespaces of our own, or this daemon
		// and the default one would see each other's containers.
		all = append(all, "--containerd="+systemContainerd,
			"--containerd-namespace=volperm-testenv", "--containerd-plugins-namespace=volperm-testenv-plugins")
	}
	all = append(all, args...)

	logPath := filepath.Join(dir, "log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the daemon's log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command("dockerd", all...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a terminal's Ctrl-C reaches the test
		// process, which stops the daemon in order, not the daemon.
		Setpgid: true,
		// A test binary killed without cleaning up (go test -timeout)
		// takes its daemons with it.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := startOnForkThread(cmd); err != nil {
		return nil, fmt.Errorf("starting dockerd: %w", err)
	}
	p := &proc{cmd: cmd, host: "unix://" + sock, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// forkThread starts every daemon from one goroutine locked to its OS thread
// for the life of the process. Pdeathsig fires when the thread that forked
// the child exits, not the process, and Go ends a thread when a goroutine
// locked to it returns: a test doing that must not kill the daemons.
var forkThread = sync.OnceValue(func() chan func() {
	reqs := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range reqs {
			f()
		}
	}()
	return reqs
})

func startOnForkThread(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	forkThread() <- func() { errc <- cmd.Start() }
	return <-errc
}

// waitReady polls the daemon until it answers, failing early if it exits.
func (p *proc) waitReady(cli *client.Client) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		err := ping(cli, time.Second)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("dockerd exited (%v) before answering; its last lines:\n%s", p.err, p.tail(30))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd did not answer within %v (%w); its last lines:\n%s", readyTimeout, err, p.tail(30))
		}
	}
}

// stop ends the daemon with SIGTERM so that it stops its containers and
// unmounts its layers, and kills its process group if it takes too long.
func (p *proc) stop() error {
	pid := p.cmd.Process.Pid
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(termTimeout):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("stopping dockerd (pid %d): no exit within %v of SIGTERM, killed", pid, termTimeout)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stopping dockerd (pid %d): still running after SIGKILL", pid)
	}
}

// tail returns the last n lines of the daemon's output.
func (p *proc) tail(n int) string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.log, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
