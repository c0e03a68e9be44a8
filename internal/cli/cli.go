// Package cli is volperm's command line: the cobra command tree, flags,
// output formats and exit codes. It is the only package that prints or
// chooses an exit code; the work is done by the packages it calls.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	ExitOK         = 0
	ExitFindings   = 1 // findings at or above the threshold, or bad input
	ExitUsage      = 2 // wrong flags or arguments
	ExitIncomplete = 3 // could not complete (daemon unreachable, I/O failure)
)

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// usageError is a mistake in flags or arguments.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// incompleteError means volperm could not do what was asked.
type incompleteError struct{ err error }

func (e incompleteError) Error() string { return e.err.Error() }
func (e incompleteError) Unwrap() error { return e.err }

// Env is the process's surroundings, so tests can run Main in-process.
type Env struct {
	Stdout, Stderr io.Writer
}

// Main runs volperm with the full argv (args[0] is the program name) and
// returns the exit code.
func Main(args []string, env Env) int {
	name := filepath.Base(args[0])
	rest := args[1:]
	if len(rest) == 1 && rest[0] == "docker-cli-plugin-metadata" {
		return printPluginMetadata(env.Stdout)
	}
	if name == "docker-volperm" || os.Getenv("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND") != "" {
		var err error
		if rest, err = pluginArgs(rest); err != nil {
			fmt.Fprintf(env.Stderr, "volperm: %v\n", err)
			return ExitUsage
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(env)
	root.SetArgs(rest)
	err := root.ExecuteContext(ctx)
	return exitCode(err, env.Stderr)
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var code codeError
	if errors.As(err, &code) {
		return code.code
	}
	fmt.Fprintf(stderr, "volperm: %s\n", oneLine(err.Error()))
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprintln(stderr, "Run 'volperm --help' for usage.")
		return ExitUsage
	}
	var inc incompleteError
	if errors.As(err, &inc) || errors.Is(err, context.Canceled) {
		return ExitIncomplete
	}
	return ExitFindings
}

// codeError carries an exit code whose reason has already been printed.
type codeError struct{ code int }

func (e codeError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func newRoot(env Env) *cobra.Command {
	root := &cobra.Command{
		Use:           "volperm",
		Short:         "Explain and fix permission problems across the container/host boundary",
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newMapCmd(env), newDoctorCmd(env), newFixCmd(env), newGrantCmd(env), newShiftCmd(env), newUsernsCmd(env), newExecCmd(env))
	return root
}

// pluginMetadata is what the Docker CLI asks a plugin for
// (docker/cli cli-plugins/metadata).
type pluginMetadata struct {
	SchemaVersion    string
	Vendor           string
	Version          string
	ShortDescription string
	URL              string `json:",omitempty"`
}

func printPluginMetadata(w io.Writer) int {
	enc := json.NewEncoder(w)
	if err := enc.Encode(pluginMetadata{
		SchemaVersion:    "0.1.0",
		Vendor:           "volperm",
		Version:          Version,
		ShortDescription: "Explain and fix container/host permission problems",
	}); err != nil {
		return ExitIncomplete
	}
	return ExitOK
}

// pluginArgs turns a plugin invocation ([docker global flags] volperm ARGS)
// into volperm's own ARGS, applying the global flags that matter here by
// setting the environment variables the Engine API client reads.
func pluginArgs(args []string) ([]string, error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			if a == "volperm" {
				return args[i+1:], nil
			}
			break
		}
		flag, val, hasVal := strings.Cut(a, "=")
		takesValue := map[string]string{
			"-H": "DOCKER_HOST", "--host": "DOCKER_HOST",
			"-c": "DOCKER_CONTEXT", "--context": "DOCKER_CONTEXT",
			"--config": "DOCKER_CONFIG",
			"-l":       "", "--log-level": "", "--tlscacert": "", "--tlscert": "", "--tlskey": "",
		}
		envName, known := takesValue[flag]
		if !known {
			continue // -D, --tls, --tlsverify and the like take no value
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("docker flag %s needs a value", flag)
			}
			i++
			val = args[i]
		}
		if envName != "" {
			os.Setenv(envName, val)
			if envName == "DOCKER_CONTEXT" {
				os.Unsetenv("DOCKER_HOST")
			}
		}
	}
	// Invoked as docker-volperm directly, without the plugin name.
	return args, nil
}
