// Package diag holds volperm's diagnostic rules. A rule is a plain value —
// a stable ID, a name, its documentation and a function over workloads and
// host facts — that reports findings, each with an explanation in uid terms
// and concrete least-privilege fixes. Rules never print and never touch
// the daemon; the facts they need are gathered beforehand.
package diag

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/volperm/volperm/internal/access"
	"github.com/volperm/volperm/internal/plan"
	"github.com/volperm/volperm/internal/workload"
)

// Severity orders findings.
type Severity int

// Severities.
const (
	Info Severity = iota
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	}
	return "error"
}

// ParseSeverity reads "info", "warning" or "error".
func ParseSeverity(s string) (Severity, error) {
	switch s {
	case "info":
		return Info, nil
	case "warning":
		return Warning, nil
	case "error":
		return Error, nil
	}
	return 0, fmt.Errorf("severity %q: want info, warning or error", s)
}

// MarshalText makes severities readable in JSON.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// Fix is one way to resolve a finding: a description, and the steps that
// carry it out (rendered as shell, or as compose YAML), when it can be
// automated.
type Fix struct {
	Description string      `json:"description"`
	Shell       string      `json:"shell,omitempty"`
	YAML        string      `json:"yaml,omitempty"`
	Steps       []plan.Step `json:"-"`
}

// fixOf builds a fix from steps: file steps give the shell text, compose
// edits the YAML to add.
func fixOf(desc string, steps ...plan.Step) Fix {
	f := Fix{Description: desc, Steps: steps}
	var files []plan.Step
	for _, s := range steps {
		if c, ok := s.(plan.ComposeEdit); ok {
			f.YAML += c.YAML()
			continue
		}
		files = append(files, s)
	}
	f.Shell = plan.ShellOf(files)
	return f
}

// Finding is one problem.
type Finding struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	Workload string   `json:"workload,omitempty"`
	Mount    string   `json:"mount,omitempty"` // container path of the mount
	Path     string   `json:"path,omitempty"`  // host path
	Message  string   `json:"message"`
	Fix      []Fix    `json:"fix"`
	File     string   `json:"file,omitempty"` // where to point a report
	Line     int      `json:"line,omitempty"`
}

// Stat is how rules see the host filesystem: it reads a path's access
// metadata without following a final symlink, and says what kind of file
// it is.
type Stat func(path string) (Node, error)

// Node is a host path's metadata.
type Node struct {
	access.File
	Socket bool
	Exists bool
}

// Host is everything known about the Docker host.
type Host struct {
	// Socket is the daemon's unix socket on this host ("" if not local).
	Socket string
	// SocketNode is its metadata, when Socket is set and readable.
	SocketNode *Node
	// SocketGroupMembers lists host users in the socket's group.
	SocketGroupMembers []string
	// HostUsers are the host's accounts other than root, by uid, for
	// telling a host user's directory from a daemon-created one.
	HostUsers map[uint32]string
	// Remap is the configured userns-remap and its host facts.
	Remap *RemapSetup
}

// Input is what the rules run over.
type Input struct {
	Workloads []workload.Workload
	Host      Host
	Stat      Stat
}

// Rule is one kind of finding.
type Rule struct {
	ID      string
	Name    string
	Summary string // one line, for docs
	Doc     string // what it means and why, for docs
	Run     func(in *Input) []Finding
}

// Run runs every rule and returns the findings in a stable order: by
// workload, then severity (worst first), then ID and mount.
func Run(in *Input) []Finding {
	var out []Finding
	for _, r := range Rules {
		for _, f := range r.Run(in) {
			f.ID = r.ID
			out = append(out, f)
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Workload, b.Workload), cmp.Compare(b.Severity, a.Severity),
			cmp.Compare(a.ID, b.ID), cmp.Compare(a.Mount, b.Mount))
	})
	return out
}

// Max is the worst severity among findings, and whether there are any.
func Max(fs []Finding) (Severity, bool) {
	if len(fs) == 0 {
		return Info, false
	}
	m := Info
	for _, f := range fs {
		m = max(m, f.Severity)
	}
	return m, true
}

func shellQuote(s string) string { return plan.Quote(s) }
