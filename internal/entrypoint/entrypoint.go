// Package entrypoint is `volperm exec`: run as root at container start,
// make the container user's ids line up with a bind-mounted path and the
// docker socket, drop every privilege and exec the command. It must not
// import the Docker client, compose or cobra: it runs before every
// container's process and its start-up cost counts.
//
// It does not chmod anything, never touches the docker socket itself, and
// never re-owns files outside the user's home and the --chown trees.
package entrypoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/volperm/volperm/internal/idmap"
)

// Exit codes before the command runs, as docker run uses them.
const (
	exitFailure       = 125
	exitNotExecutable = 126
	exitNotFound      = 127
)

// Main runs `volperm exec ARGS...` (args excludes "exec") and returns an
// exit code when it could not exec the command: 125 for its own failure,
// 126 for a command that cannot be executed, 127 for one not found. When
// the command starts, Main does not return.
func Main(args []string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "volperm exec: %v\n", err)
		return exitFailure
	}
	o, err := parseOptions(args, os.Getenv)
	if err != nil {
		return fail(err)
	}
	if o.help {
		io.WriteString(stdout, usage)
		return 0
	}
	if err := refuseUnsafe(); err != nil {
		return fail(err)
	}
	groups, err := startGroups()
	if err != nil {
		return fail(err)
	}
	p := &preparer{root: "/", startGroups: groups, commit: writePair}
	if m, err := idmap.ReadProcess(os.Getpid()); err == nil {
		p.ns = &m
	}
	if p.mounts, err = mountPoints(); err != nil {
		return fail(err)
	}
	t, err := p.prepare(context.Background(), o)
	if err != nil {
		return fail(err)
	}
	for _, n := range t.notes {
		fmt.Fprintf(stderr, "volperm exec: %s\n", n)
	}
	if o.verbose {
		fmt.Fprintf(stderr, "volperm exec: running %s as uid %d gid %d groups %v home %s\n", o.cmd[0], t.uid, t.gid, t.groups, t.home)
	}
	env := t.env(os.Environ())
	if err := drop(t); err != nil {
		return fail(err)
	}
	if err := verify(t); err != nil {
		return fail(err)
	}
	return run(o.cmd, env, stderr)
}

// run execs the command in volperm's place, after the drop: whether the
// user may execute it is the user's question, not root's.
func run(cmd, env []string, stderr io.Writer) int {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			os.Setenv("PATH", v)
		}
	}
	path, err := exec.LookPath(cmd[0])
	if errors.Is(err, exec.ErrDot) {
		// Found through a relative PATH entry: a shell would run it, and
		// so does docker run.
		err = nil
	}
	if err != nil {
		return execFailure(stderr, cmd[0], err)
	}
	err = syscall.Exec(path, cmd, env)
	return execFailure(stderr, cmd[0], err)
}

func execFailure(stderr io.Writer, name string, err error) int {
	code := exitNotExecutable
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, syscall.ENOENT) || errors.Is(err, os.ErrNotExist) {
		code = exitNotFound
	}
	fmt.Fprintf(stderr, "volperm exec: %q: %v\n", name, err)
	return code
}
