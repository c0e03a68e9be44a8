// Package entrypoint is `volperm exec`: run as root at container start,
// make the container user's ids line up with a bind-mounted path and the
// docker socket, drop every privilege and exec the command. It must not
// import the Docker client, compose or cobra: it runs before every
// container's process and its start-up cost counts.
package entrypoint

import (
	"fmt"
	"io"
)

// Main runs `volperm exec ARGS...` (args excludes "exec") and returns an
// exit code when it could not exec the command: 125 for its own failure,
// 126 for a command that cannot be executed, 127 for one not found.
func Main(args []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, "volperm exec: not implemented yet")
	return 125
}
