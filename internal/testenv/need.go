// Package testenv is test support for what only the real kernel and the
// real Docker daemon can decide. It builds a small test image without a
// registry, starts a second dockerd with --userns-remap for a given
// /etc/subuid and /etc/subgid layout, and runs containers with bind mounts,
// reporting the owners that the host and the container see.
//
// It edits the host (/etc/subuid, /etc/subgid, system users) and starts
// daemons, so a package that uses it must call Main from its TestMain:
// Main puts everything back when the tests end, even after Ctrl-C. Test
// processes take turns at the host: the first edit takes a lock (in
// /run/volperm-testenv) that is held until Cleanup, and a process killed
// before its Cleanup has its edits undone by the next one.
//
// Under CI=true a missing requirement fails the test; elsewhere it skips
// with a one-line reason, so that `go test ./...` stays green on a laptop.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI=true, where a test may not
// skip for want of root or Docker.
func InCI() bool { return os.Getenv("CI") == "true" }

// unmet stops a test whose environment lacks something: a CI run must not
// pass by skipping what it was meant to prove, a developer's run may.
func unmet(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

// NeedRoot stops the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		unmet(t, "needs root (chown, ACLs, a second dockerd); running as uid %d", euid)
	}
}

// NeedCommand stops the test unless name is on PATH.
func NeedCommand(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		unmet(t, "needs %s on PATH", name)
	}
}
