//go:build !execonly

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/volperm/volperm/internal/cli"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"volperm":        func() { os.Exit(cli.Main(os.Args, cli.Env{Stdout: os.Stdout, Stderr: os.Stderr})) },
		"docker-volperm": func() { os.Exit(cli.Main(os.Args, cli.Env{Stdout: os.Stdout, Stderr: os.Stderr})) },
	})
}

// TestScripts runs the CLI scripts in testdata/script. They use only files
// they carry, with DOCKER_HOST pointing at a socket where no daemon answers,
// so their output does not depend on the machine.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("DOCKER_HOST", "unix://"+e.WorkDir+"/no-daemon.sock")
			e.Setenv("DOCKER_CONFIG", e.WorkDir+"/.docker")
			examples, err := filepath.Abs("../../examples")
			if err != nil {
				return err
			}
			e.Setenv("EXAMPLES", examples)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "dockercli":
				_, err := exec.LookPath("docker")
				if err != nil && os.Getenv("CI") == "true" {
					return false, fmt.Errorf("CI=true but there is no docker CLI on PATH: %w", err)
				}
				return err == nil, nil
			}
			return false, nil
		},
	})
}
