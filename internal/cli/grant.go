package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/volperm/volperm/internal/identity"
	"github.com/volperm/volperm/internal/plan"
)

type grantOptions struct {
	user, group string
	readOnly    bool
	recursive   bool
	deflt       bool
	remove      bool
}

func newGrantCmd(env Env) *cobra.Command {
	var o grantOptions
	cmd := &cobra.Command{
		Use:   "grant PATH (--user NAME|UID | --group NAME|GID)",
		Short: "Grant a host user or group access to a tree with POSIX ACLs (and take it back)",
		Long: `Grant a host user or group read-write (or read-only) access to a path with named POSIX ACL
entries, without changing owners or opening anything to others: the fix for a host user who must
edit files a remapped container wrote (owned by, say, host uid 100032). --recursive walks the tree
(never following symlinks, staying on one filesystem) with capital-X semantics: execute only on
directories and on files something may already execute. --default also sets default ACLs on
directories so files created later inherit the grant. The mask is recomputed as setfacl does.
--remove takes the grant back.`,
		Example: `  volperm grant ./data --user alice --recursive --default
  volperm grant /srv/logs --group 982 --read-only --recursive
  volperm grant ./data --user alice --recursive --remove`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGrant(cmd.Context(), env, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.user, "user", "", "host user name or uid to grant")
	f.StringVar(&o.group, "group", "", "host group name or gid to grant")
	f.BoolVar(&o.readOnly, "read-only", false, "grant rX instead of rwX")
	f.BoolVarP(&o.recursive, "recursive", "R", false, "the whole tree")
	f.BoolVarP(&o.deflt, "default", "d", false, "also default ACLs on directories, inherited by new files")
	f.BoolVar(&o.remove, "remove", false, "remove the grant (access and default entries)")
	return cmd
}

func runGrant(ctx context.Context, env Env, o grantOptions, path string) error {
	if (o.user == "") == (o.group == "") {
		return usagef("give exactly one of --user or --group")
	}
	g := plan.TreeGrant{Path: path, Perm: "rwX", Recursive: o.recursive, Default: o.deflt, Remove: o.remove}
	if o.readOnly {
		g.Perm = "rX"
	}
	var err error
	if o.user != "" {
		g.ID, err = lookupHostID(o.user, false)
	} else {
		g.Group = true
		g.ID, err = lookupHostID(o.group, true)
	}
	if err != nil {
		return err
	}
	res, err := g.Run(ctx)
	if err != nil {
		return err
	}
	verb := "granted"
	if o.remove {
		verb = "removed"
	}
	fmt.Fprintf(env.Stdout, "%s %s on %s: %d changed, %d already so, %d skipped (symlinks and special files)\n",
		verb, g.Perm, path, res.Changed, res.Unchanged, res.Skipped)
	return nil
}

// lookupHostID resolves a host user or group name, or takes a number.
func lookupHostID(s string, group bool) (uint32, error) {
	if id, err := identity.ParseID(s); err == nil {
		return id, nil
	}
	if group {
		gs, err := identity.ParseGroupFile("/etc/group")
		if err != nil {
			return 0, err
		}
		if g, ok := gs.ByName(s); ok {
			return g.GID, nil
		}
		return 0, fmt.Errorf("no group %q in /etc/group", s)
	}
	us, err := identity.ParsePasswdFile("/etc/passwd")
	if err != nil {
		return 0, err
	}
	if u, ok := us.ByName(s); ok {
		return u.UID, nil
	}
	return 0, fmt.Errorf("no user %q in /etc/passwd", s)
}
