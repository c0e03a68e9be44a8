// Package compose turns a Compose project into workloads, using the
// official compose-spec loader (the one docker compose uses) for file
// discovery, merging of several -f files, .env and environment
// interpolation, and path resolution. It finds the YAML lines of services
// and volumes for reports. It does not talk to the daemon: image users are
// resolved later by the caller.
package compose

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"

	"github.com/volperm/volperm/internal/workload"
)

// Options says which project to load.
type Options struct {
	Files      []string // -f files, merged in order; none: discovered as docker compose does
	ProjectDir string   // --project-directory
	Env        []string // the environment to interpolate from (os.Environ())
}

// Project is a loaded project.
type Project struct {
	Name      string
	Files     []string
	Workloads []workload.Workload
	// Unset lists variables the files use that are not set (interpolated
	// as empty strings).
	Unset []string
	// RawUser is each service's `user:` before interpolation, when it
	// contains a variable.
	RawUser map[string]string
}

var logMu sync.Mutex

// Load reads and merges the project.
func Load(ctx context.Context, o Options) (*Project, error) {
	var opts []cli.ProjectOptionsFn
	if o.ProjectDir != "" {
		// First: the default file lookup and .env are relative to it.
		opts = append(opts, cli.WithWorkingDirectory(o.ProjectDir))
	}
	opts = append(opts,
		cli.WithEnv(o.Env),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithDefaultConfigPath,
		cli.WithResolvedPaths(true),
	)
	po, err := cli.NewProjectOptions(o.Files, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading compose project: %w", err)
	}

	// The loader reports unset variables through logrus warnings only;
	// collect them instead of letting them reach the terminal.
	hook := &unsetHook{}
	logMu.Lock()
	std := logrus.StandardLogger()
	oldOut, oldHooks := std.Out, std.ReplaceHooks(logrus.LevelHooks{})
	std.SetOutput(discard{})
	std.AddHook(hook)
	p, err := po.LoadProject(ctx)
	std.SetOutput(oldOut)
	std.ReplaceHooks(oldHooks)
	logMu.Unlock()
	if err != nil {
		return nil, loadError(err)
	}

	out := &Project{Name: p.Name, Files: p.ComposeFiles, Unset: hook.unset(), RawUser: map[string]string{}}
	lines := findLines(p.ComposeFiles)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range p.Services {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		svc := p.Services[name]
		w := workload.Workload{
			Name:       name,
			Image:      svc.Image,
			UserSpec:   svc.User,
			GroupAdd:   slices.Clone(svc.GroupAdd),
			UsernsMode: svc.UserNSMode,
		}
		if svc.User != "" {
			w.UserFrom = "compose user:"
		}
		loc := lines.service(name)
		w.Origin = workload.Origin{File: loc.file, Line: loc.line}
		if raw := lines.raw(name, "user"); strings.Contains(raw, "$") {
			out.RawUser[name] = raw
		}
		for i, v := range svc.Volumes {
			m := workload.Mount{Type: v.Type, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly, Line: lines.volume(name, i)}
			if v.Type == types.VolumeTypeBind {
				// compose sends the legacy Binds form, whose missing
				// sources the daemon creates, unless create_host_path
				// is false (compose pkg/compose/create.go).
				m.CreateSource = v.Bind == nil || bool(v.Bind.CreateHostPath)
			}
			w.Mounts = append(w.Mounts, m)
		}
		out.Workloads = append(out.Workloads, w)
	}
	return out, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type unsetHook struct {
	mu   sync.Mutex
	vars []string
}

func (h *unsetHook) Levels() []logrus.Level { return []logrus.Level{logrus.WarnLevel} }

func (h *unsetHook) Fire(e *logrus.Entry) error {
	var name string
	if _, err := fmt.Sscanf(e.Message, "The %q variable is not set.", &name); err == nil {
		h.mu.Lock()
		if !slices.Contains(h.vars, name) {
			h.vars = append(h.vars, name)
		}
		h.mu.Unlock()
	}
	return nil
}

func (h *unsetHook) unset() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.vars)
}

// loadError makes the loader's errors one line that names the file.
func loadError(err error) error {
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	// The schema validator says "services.app.usr false schema" for a key
	// the specification does not have.
	if m := falseSchema.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("%s%s: unknown key (not in the compose specification)", m[1], m[2])
	}
	return fmt.Errorf("loading compose project: %s", msg)
}

var falseSchema = regexp.MustCompile(`^(validating [^:]+: )?(\S+) false schema$`)

// DefaultFiles lists the files docker compose would load in dir when no -f
// is given: the first of compose.yaml, compose.yml, docker-compose.yml,
// docker-compose.yaml, plus its override file.
func DefaultFiles(dir string) []string {
	for _, base := range []string{"compose", "docker-compose"} {
		for _, ext := range []string{".yaml", ".yml"} {
			p := filepath.Join(dir, base+ext)
			if _, err := os.Stat(p); err == nil {
				files := []string{p}
				for _, oext := range []string{".yaml", ".yml"} {
					o := filepath.Join(dir, base+".override"+oext)
					if _, err := os.Stat(o); err == nil {
						files = append(files, o)
						break
					}
				}
				return files
			}
		}
	}
	return nil
}
