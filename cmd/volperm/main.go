//go:build !execonly

// Command volperm explains and fixes permission problems across the
// container/host boundary. Installed as docker-volperm in a cli-plugins
// directory it is also the Docker CLI plugin "docker volperm".
//
// Built with -tags execonly it carries only the container entrypoint,
// volperm exec (see main_execonly.go).
package main

import (
	"os"

	"github.com/volperm/volperm/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, cli.Env{Stdout: os.Stdout, Stderr: os.Stderr}))
}
