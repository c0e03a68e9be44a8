package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/diag"
	"github.com/volperm/volperm/internal/workload"
)

func report(w io.Writer, format string, run *doctorRun, fs []diag.Finding) error {
	switch format {
	case "json":
		return writeJSON(w, jsonReport{Workloads: jsonWorkloads(run.workloads), Findings: nonNil(fs)})
	case "sarif":
		return writeJSON(w, sarif(fs))
	}
	return writeText(w, run, fs)
}

func nonNil(fs []diag.Finding) []diag.Finding {
	if fs == nil {
		return []diag.Finding{}
	}
	for i := range fs {
		if fs[i].Fix == nil {
			fs[i].Fix = []diag.Fix{}
		}
	}
	return fs
}

type jsonReport struct {
	Workloads []jsonWorkload `json:"workloads"`
	Findings  []diag.Finding `json:"findings"`
}

type jsonIDs2 struct {
	UID  uint32   `json:"uid"`
	GIDs []uint32 `json:"gids"`
}

type jsonWorkload struct {
	Name       string           `json:"name"`
	File       string           `json:"file,omitempty"`
	Line       int              `json:"line,omitempty"`
	Container  string           `json:"container,omitempty"`
	Image      string           `json:"image,omitempty"`
	UserSpec   string           `json:"user_spec"`
	UserFrom   string           `json:"user_from,omitempty"`
	User       *jsonIDs2        `json:"user,omitempty"`
	HostUser   *jsonIDs2        `json:"host_user,omitempty"`
	UserError  string           `json:"user_error,omitempty"`
	GroupAdd   []string         `json:"group_add,omitempty"`
	UsernsMode string           `json:"userns_mode,omitempty"`
	Remapped   bool             `json:"remapped"`
	Mounts     []workload.Mount `json:"mounts"`
	Unknown    []string         `json:"unknown,omitempty"`
}

func jsonWorkloads(ws []workload.Workload) []jsonWorkload {
	out := []jsonWorkload{}
	for _, w := range ws {
		j := jsonWorkload{Name: w.Name, File: w.Origin.File, Line: w.Origin.Line, Container: w.Origin.Container, Image: w.Image,
			UserSpec: w.UserSpec, UserFrom: w.UserFrom, GroupAdd: w.GroupAdd, UsernsMode: w.UsernsMode, Remapped: w.Remapped,
			Mounts: w.Mounts, Unknown: w.Unknown}
		if j.Mounts == nil {
			j.Mounts = []workload.Mount{}
		}
		if w.UserErr != nil {
			j.UserError = w.UserErr.Error()
		}
		if w.User != nil {
			j.User = &jsonIDs2{UID: w.User.UID, GIDs: w.ContainerGIDs()}
			uid, gids, _ := w.HostIDs()
			j.HostUser = &jsonIDs2{UID: uid, GIDs: gids}
		}
		out = append(out, j)
	}
	return out
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func writeText(w io.Writer, run *doctorRun, fs []diag.Finding) error {
	color := isTerminal(w) && os.Getenv("NO_COLOR") == ""
	paint := func(s diag.Severity) string {
		text := fmt.Sprintf("%-7s", s)
		if !color {
			return text
		}
		code := map[diag.Severity]string{diag.Error: "31", diag.Warning: "33", diag.Info: "36"}[s]
		return "\x1b[" + code + "m" + text + "\x1b[0m"
	}
	byWorkload := map[string][]diag.Finding{}
	for _, f := range fs {
		byWorkload[f.Workload] = append(byWorkload[f.Workload], f)
	}
	var b strings.Builder
	section := func(title string, list []diag.Finding, unknown []string) {
		fmt.Fprintf(&b, "%s\n", title)
		for _, u := range unknown {
			fmt.Fprintf(&b, "  not checked: %s\n", u)
		}
		if len(list) == 0 {
			fmt.Fprintf(&b, "  ok\n")
		}
		for _, f := range list {
			where := f.Path
			if f.Mount != "" {
				where = f.Path + " -> " + f.Mount
			}
			fmt.Fprintf(&b, "  %s %s %s\n", paint(f.Severity), f.ID, where)
			fmt.Fprintf(&b, "%s", indent(wrap(f.Message, 88), "      "))
			for _, fix := range f.Fix {
				fmt.Fprintf(&b, "      fix: %s\n", fix.Description)
				if fix.Shell != "" {
					fmt.Fprintf(&b, "        %s\n", fix.Shell)
				}
				if fix.YAML != "" {
					fmt.Fprintf(&b, "%s", indent(fix.YAML, "        "))
				}
			}
		}
		b.WriteString("\n")
	}
	if host := byWorkload[""]; len(host) > 0 {
		section("docker host", host, nil)
	}
	for _, wl := range run.workloads {
		section(describeWorkload(wl), byWorkload[wl.Name], wl.Unknown)
	}
	if len(fs) == 0 {
		fmt.Fprintf(&b, "no findings\n")
	} else {
		counts := map[diag.Severity]int{}
		for _, f := range fs {
			counts[f.Severity]++
		}
		fmt.Fprintf(&b, "%d error(s), %d warning(s), %d info\n", counts[diag.Error], counts[diag.Warning], counts[diag.Info])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func describeWorkload(w workload.Workload) string {
	where := ""
	switch {
	case w.Origin.File != "" && w.Origin.Line > 0:
		where = fmt.Sprintf(" (%s:%d)", filepath.Base(w.Origin.File), w.Origin.Line)
	case w.Origin.Container != "":
		where = fmt.Sprintf(" (container %.12s)", w.Origin.Container)
	}
	who := "user unknown"
	if w.User != nil {
		uid, gids, _ := w.HostIDs()
		name := ""
		if w.User.Name != "" {
			name = " " + w.User.Name
		}
		who = fmt.Sprintf("runs as uid %d%s gids %v", w.User.UID, name, w.ContainerGIDs())
		if w.Remapped {
			who += fmt.Sprintf(", host uid %d gids %v under the userns remap", uid, gids)
		} else {
			who += " (same ids on the host: no userns remap)"
		}
	}
	return fmt.Sprintf("%s%s: %s", w.Name, where, who)
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(s) {
		if i > 0 && n+1+len(word) > width {
			b.WriteString("\n")
			n = 0
		} else if i > 0 {
			b.WriteString(" ")
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

// SARIF 2.1.0, as code scanning services read it.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name    string      `json:"name"`
	Version string      `json:"version"`
	Rules   []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID               string    `json:"id"`
	Name             string    `json:"name"`
	ShortDescription sarifText `json:"shortDescription"`
	FullDescription  sarifText `json:"fullDescription"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

func sarif(fs []diag.Finding) sarifLog {
	d := sarifDriver{Name: "volperm", Version: Version}
	for _, r := range diag.Rules {
		d.Rules = append(d.Rules, sarifRule{ID: r.ID, Name: r.Name, ShortDescription: sarifText{r.Summary}, FullDescription: sarifText{r.Doc}})
	}
	results := []sarifResult{}
	wd, _ := os.Getwd()
	for _, f := range fs {
		res := sarifResult{RuleID: f.ID, Level: map[diag.Severity]string{diag.Error: "error", diag.Warning: "warning", diag.Info: "note"}[f.Severity]}
		msg := f.Message
		for _, fix := range f.Fix {
			if fix.Shell != "" {
				msg += " Fix: " + fix.Shell
				break
			}
		}
		res.Message = sarifText{msg}
		if f.File != "" {
			uri := f.File
			if rel, err := filepath.Rel(wd, f.File); err == nil && !strings.HasPrefix(rel, "..") {
				uri = filepath.ToSlash(rel)
			}
			loc := sarifLocation{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: uri}}}
			if f.Line > 0 {
				loc.PhysicalLocation.Region = &sarifRegion{StartLine: f.Line}
			}
			res.Locations = []sarifLocation{loc}
		}
		results = append(results, res)
	}
	return sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{{Tool: sarifTool{Driver: d}, Results: results}}}
}
