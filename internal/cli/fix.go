package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/volperm/volperm/internal/diag"
	"github.com/volperm/volperm/internal/plan"
)

type fixOptions struct {
	doctorOptions
	apply    bool
	strategy string
	only     []string
}

func newFixCmd(env Env) *cobra.Command {
	var o fixOptions
	cmd := &cobra.Command{
		Use:   "fix [flags]",
		Short: "Turn doctor's findings into least-privilege fixes: printed as shell, or applied",
		Long: `Turn doctor's findings into a plan of small least-privilege steps: create a missing bind
source with the mapped owner, chown it to the mapped ids, or grant the mapped uid a POSIX ACL (plus a
default ACL for new files), a shared setgid group for shared directories, the socket's gid in
group_add. Nothing is ever made world-writable.

Without --apply the plan is printed as a POSIX shell script to review or run with sh. With --apply
volperm performs the same steps itself (ACLs through the xattrs, no setfacl needed) and says what
changed; a second run changes nothing. Compose changes go to the override file docker compose
merges automatically (compose.override.yaml beside the project), never into your own files.`,
		Example: `  volperm fix                     # print the plan for the project here
  volperm fix | sh                # run it
  volperm fix --apply             # or let volperm apply it
  volperm fix --strategy owner --only VP102`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.format = "text"
			o.failOn = "info"
			return runFix(cmd.Context(), env, o)
		},
	}
	f := cmd.Flags()
	addInputFlags(f, &o.doctorOptions)
	f.BoolVar(&o.apply, "apply", false, "perform the steps instead of printing them")
	f.StringVar(&o.strategy, "strategy", "auto", "for a source the workload cannot use: auto (ACL when a host user owns it, else owner), acl or owner")
	f.StringSliceVar(&o.only, "only", nil, "fix only these finding IDs (comma-separated)")
	return cmd
}

// planned is a finding and the fix chosen for it.
type planned struct {
	finding diag.Finding
	fix     diag.Fix
	manual  bool // no step can be automated
}

func runFix(ctx context.Context, env Env, o fixOptions) error {
	if !slices.Contains([]string{"auto", "acl", "owner"}, o.strategy) {
		return usagef("--strategy %q: want auto, acl or owner", o.strategy)
	}
	run, err := gather(ctx, o.doctorOptions)
	if err != nil {
		return err
	}
	findings := diag.Run(&diag.Input{Workloads: run.workloads, Host: run.host, Stat: statNode})
	var plans []planned
	for _, f := range findings {
		if len(o.only) > 0 && !slices.Contains(o.only, f.ID) {
			continue
		}
		fix, ok := chooseFix(f, o.strategy)
		plans = append(plans, planned{finding: f, fix: fix, manual: !ok})
	}
	for _, n := range run.notes {
		fmt.Fprintf(env.Stderr, "volperm: note: %s\n", n)
	}
	if !o.apply {
		return printPlan(env.Stdout, plans)
	}
	return applyPlan(env.Stdout, plans)
}

// chooseFix picks the first automatable fix, honouring the strategy when a
// finding offers both an owner and an ACL fix.
func chooseFix(f diag.Finding, strategy string) (diag.Fix, bool) {
	want := map[string]func(plan.Step) bool{
		"acl":   func(s plan.Step) bool { _, ok := s.(plan.Grant); return ok },
		"owner": func(s plan.Step) bool { _, ok := s.(plan.Chown); return ok },
	}[strategy]
	if want != nil {
		for _, fx := range f.Fix {
			if slices.ContainsFunc(fx.Steps, want) {
				return fx, true
			}
		}
	}
	for _, fx := range f.Fix {
		if len(fx.Steps) > 0 {
			return fx, true
		}
	}
	if len(f.Fix) > 0 {
		return f.Fix[0], false
	}
	return diag.Fix{}, false
}

func header(f diag.Finding) string {
	where := f.Path
	if f.Mount != "" {
		where += " -> " + f.Mount
	}
	w := f.Workload
	if w == "" {
		w = "host"
	}
	return fmt.Sprintf("%s %s %s", f.ID, w, where)
}

func printPlan(w io.Writer, plans []planned) error {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# volperm fix: review, then run with sh (or use volperm fix --apply).\nset -e\n")
	seen := map[string]bool{}
	if len(plans) == 0 {
		b.WriteString("# nothing to fix\n")
	}
	for _, p := range plans {
		fmt.Fprintf(&b, "\n# %s\n# %s\n", header(p.finding), p.fix.Description)
		if p.manual {
			b.WriteString("# (not automated: do it by hand)\n")
			if p.fix.Shell != "" {
				fmt.Fprintf(&b, "#   %s\n", p.fix.Shell)
			}
			continue
		}
		hasEdit := false
		for _, s := range p.fix.Steps {
			_, isEdit := s.(plan.ComposeEdit)
			hasEdit = hasEdit || isEdit
			sh := s.Shell()
			if sh == "" || seen[sh] {
				continue
			}
			seen[sh] = true
			b.WriteString(sh + "\n")
		}
		if p.fix.YAML != "" && !hasEdit {
			b.WriteString("# add to the container's configuration by hand:\n")
			for _, l := range strings.Split(strings.TrimRight(p.fix.YAML, "\n"), "\n") {
				b.WriteString("#   " + l + "\n")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func applyPlan(w io.Writer, plans []planned) error {
	changed, unchanged, failed := 0, 0, 0
	seen := map[string]bool{}
	var composeFiles []string
	for _, p := range plans {
		if p.manual {
			fmt.Fprintf(w, "manual   %s: %s\n", header(p.finding), p.fix.Description)
			continue
		}
		for _, s := range p.fix.Steps {
			key := s.Describe()
			if seen[key] {
				continue
			}
			seen[key] = true
			c, err := s.Apply()
			switch {
			case err != nil:
				failed++
				fmt.Fprintf(w, "failed   %s: %s: %v\n", header(p.finding), s.Describe(), err)
			case c:
				changed++
				fmt.Fprintf(w, "changed  %s: %s\n", header(p.finding), s.Describe())
				if ce, ok := s.(plan.ComposeEdit); ok && !slices.Contains(composeFiles, ce.File) {
					composeFiles = append(composeFiles, ce.File)
				}
			default:
				unchanged++
				fmt.Fprintf(w, "in place %s: %s\n", header(p.finding), s.Describe())
			}
		}
	}
	for _, f := range composeFiles {
		fmt.Fprintf(w, "wrote %s: docker compose merges it when no -f is given; with -f, add -f %s\n", f, f)
	}
	switch {
	case changed == 0 && failed == 0:
		fmt.Fprintf(w, "nothing changed: %d step(s) already in place\n", unchanged)
	default:
		fmt.Fprintf(w, "%d step(s) changed, %d already in place, %d failed\n", changed, unchanged, failed)
	}
	if failed > 0 {
		return codeError{ExitFindings}
	}
	return nil
}
