// Command volperm explains and fixes permission problems across the
// container/host boundary. Installed as docker-volperm in a cli-plugins
// directory it is also the Docker CLI plugin "docker volperm".
package main

import (
	"os"

	"github.com/volperm/volperm/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, cli.Env{Stdout: os.Stdout, Stderr: os.Stderr}))
}
