// Command volperm explains and fixes permission problems across the
// container/host boundary. Installed as docker-volperm in a cli-plugins
// directory it is also the Docker CLI plugin "docker volperm".
package main

import (
	"os"

	"github.com/volperm/volperm/internal/cli"
	"github.com/volperm/volperm/internal/entrypoint"
)

func main() {
	// The container entrypoint takes its own path, away from the command
	// tree: it runs before every container's process.
	if len(os.Args) > 1 && os.Args[1] == "exec" {
		os.Exit(entrypoint.Main(os.Args[2:], os.Stderr))
	}
	os.Exit(cli.Main(os.Args, cli.Env{Stdout: os.Stdout, Stderr: os.Stderr}))
}
