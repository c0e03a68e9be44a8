package cli

import (
	"github.com/spf13/cobra"

	"github.com/volperm/volperm/internal/entrypoint"
)

// newExecCmd is `volperm exec`, the container entrypoint. It parses its
// own flags (package entrypoint has no cobra in its import graph, so that
// the slim -tags execonly build can carry it alone) and, on success, never
// returns: the command replaces volperm.
func newExecCmd(env Env) *cobra.Command {
	return &cobra.Command{
		Use:   "exec [OPTIONS] -- COMMAND [ARG...]",
		Short: "Container entrypoint: give the user the ids of a mounted path, join the docker socket's group, drop root, exec COMMAND",
		Long: `Container entrypoint: give the user the ids of a mounted path, join the docker socket's group, drop root, exec COMMAND.

Run 'volperm exec --help' for its options; they can also be set with
VOLPERM_* environment variables.`,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			return codeError{entrypoint.Main(args, env.Stdout, env.Stderr)}
		},
	}
}
