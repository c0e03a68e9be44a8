package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Daemon is a dockerd the tests talk to.
type Daemon struct {
	Host     string         // for example "unix:///tmp/vpd-123/1/s"
	Client   *client.Client // a client for Host
	DataRoot string         // the --data-root given to the daemon; "" for the default daemon
	PID      int            // the dockerd process; 0 if unknown
}

// String describes the daemon for messages.
func (d *Daemon) String() string { return "dockerd at " + d.Host }

// defaultDaemon connects once per process: the default daemon does not
// come and go during a test run, and a missing one should not cost every
// test its own ping timeout.
var defaultDaemon = sync.OnceValues(func() (*Daemon, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("creating a Docker client: %w", err)
	}
	d := &Daemon{Host: cli.DaemonHost(), Client: cli}
	if err := ping(cli, 5*time.Second); err != nil {
		cli.Close()
		return nil, fmt.Errorf("pinging %s: %w", d.Host, err)
	}
	return d, nil
})

// NeedDocker returns the default daemon (DOCKER_HOST, or
// unix:///var/run/docker.sock), or stops the test when it does not answer.
func NeedDocker(t testing.TB) *Daemon {
	t.Helper()
	d, err := defaultDaemon()
	if err != nil {
		unmet(t, "needs a running Docker daemon: %v", err)
	}
	return d
}

// ping asks the daemon for its API version, which also settles the version
// the client speaks (dockerd 20.10 answers 1.41).
func ping(cli *client.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	return err
}

// state is the process-wide bookkeeping of what this package started and
// changed. Its mutex also serialises daemon starts and host edits, which
// must never interleave.
var state struct {
	sync.Mutex
	dir    string // short private directory: sockets, exec roots and the shared data root
	starts int    // numbers the per-start directories under dir

	remap    *proc   // the running --userns-remap daemon, if any
	remapKey string  // the Layout it runs with
	remapD   *Daemon // what RemapDaemon returned for it

	host hostEdits // what must be undone on the host

	// interrupted is set by the signal handler's cleanup: a test still
	// running until the process exits must not edit the host again.
	interrupted bool
}

// errInterrupted refuses new host edits and daemons after an interrupt.
var errInterrupted = errors.New("the test process is being interrupted")

// Main is TestMain for packages that use this one:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// It runs the tests, then Cleanup, and exits with the tests' status. An
// interrupt or SIGTERM also cleans up before exiting, so that an aborted run
// does not leave /etc/subuid edited or a dockerd running.
func Main(m *testing.M) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "testenv: %v: cleaning up\n", sig)
		cleanupWithin(30 * time.Second)
		os.Exit(1)
	}()
	code := m.Run()
	signal.Stop(sigs)
	Cleanup()
	os.Exit(code)
}

// cleanupWithin gives up on Cleanup after timeout: a signal may arrive while
// a test holds the state lock (waiting for a daemon, say), and an interrupt
// must end the process in any case.
func cleanupWithin(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		state.Lock()
		defer state.Unlock()
		state.interrupted = true
		if err := cleanup(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: cleaning up: %v\n", err)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		fmt.Fprintf(os.Stderr, "testenv: cleanup did not finish within %v\n", timeout)
	}
}

// Cleanup stops the daemons this package started, restores /etc/subuid and
// /etc/subgid byte for byte, deletes the users and groups it created and
// removes its temporary directory. It is safe to call more than once; later
// calls to RemapDaemon and friends start afresh.
func Cleanup() {
	state.Lock()
	defer state.Unlock()
	if err := cleanup(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: cleaning up: %v\n", err)
	}
}

func cleanup() error {
	var errs []error
	if err := stopRemap(); err != nil {
		errs = append(errs, err)
	}
	// The journal records the daemons' directory, so ending the host edits
	// removes it; this covers a directory made before any host edit.
	if err := endHostEdits(); err != nil {
		errs = append(errs, err)
	}
	if state.dir != "" {
		if err := removeUnmounted(state.dir); err != nil {
			errs = append(errs, err)
		}
		state.dir = ""
	}
	return errors.Join(errs...)
}
