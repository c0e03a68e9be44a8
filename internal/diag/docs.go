package diag

import (
	"fmt"
	"strings"
)

// Markdown renders the rule reference (docs/rules.md) from Rules, so the
// documentation cannot drift from the code.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# volperm doctor rules\n\n")
	b.WriteString("Generated from internal/diag: `go test ./internal/diag -run TestRulesDoc -update`. IDs are stable and never reused.\n\n")
	b.WriteString("| ID | name | what it finds |\n|---|---|---|\n")
	for _, r := range Rules {
		fmt.Fprintf(&b, "| [%s](#%s) | `%s` | %s |\n", r.ID, strings.ToLower(r.ID), r.Name, r.Summary)
	}
	for _, r := range Rules {
		fmt.Fprintf(&b, "\n## %s\n\n`%s`: %s.\n\n%s\n", r.ID, r.Name, r.Summary, r.Doc)
	}
	return b.String()
}
