//go:build execonly

// Built with -tags execonly, volperm carries only the container entrypoint
// (`volperm exec`): no Docker client, compose loader or command tree, so
// it is small and starts fast in every container that uses it.
package main

import (
	"fmt"
	"os"

	"github.com/volperm/volperm/internal/entrypoint"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "exec" {
		os.Exit(entrypoint.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	fmt.Fprintln(os.Stderr, "volperm: this build carries only the container entrypoint: volperm exec [OPTIONS] -- COMMAND [ARG...]")
	os.Exit(125)
}
