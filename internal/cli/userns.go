package cli

import "github.com/spf13/cobra"

// newUsernsCmd is `volperm userns`.
func newUsernsCmd(env Env) *cobra.Command {
	_ = env
	return &cobra.Command{Use: "userns", Short: "Check, plan and apply daemon user-namespace remapping", Hidden: true}
}
