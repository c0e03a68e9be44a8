// Package engine talks to the Docker Engine API: it finds the endpoint the
// Docker CLI would use (DOCKER_HOST, then the current context) and reads the
// daemon facts volperm needs. It does not parse command lines or print.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/client"
)

// DefaultHost is the Docker CLI's default endpoint.
const DefaultHost = "unix:///var/run/docker.sock"

// Endpoint is where a daemon answers, and how that was decided.
type Endpoint struct {
	Host    string
	Context string // the CLI context it came from, "" when from DOCKER_HOST
}

// ResolveEndpoint finds the daemon endpoint as the Docker CLI does
// (cli/command/cli.go resolveContextName): an explicit context, then
// DOCKER_HOST, then DOCKER_CONTEXT, then "currentContext" in config.json.
func ResolveEndpoint(explicitContext string) (Endpoint, error) {
	if explicitContext == "" {
		if h := os.Getenv("DOCKER_HOST"); h != "" {
			return Endpoint{Host: h}, nil
		}
	}
	name := explicitContext
	if name == "" {
		name = os.Getenv("DOCKER_CONTEXT")
	}
	cfgDir := configDir()
	if name == "" {
		data, err := os.ReadFile(filepath.Join(cfgDir, "config.json"))
		if err == nil {
			var cfg struct {
				CurrentContext string `json:"currentContext"`
			}
			if err := json.Unmarshal(data, &cfg); err != nil {
				return Endpoint{}, fmt.Errorf("reading %s: %w", filepath.Join(cfgDir, "config.json"), err)
			}
			name = cfg.CurrentContext
		}
	}
	if name == "" || name == "default" {
		return Endpoint{Host: DefaultHost, Context: "default"}, nil
	}
	sum := sha256.Sum256([]byte(name))
	meta := filepath.Join(cfgDir, "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json")
	data, err := os.ReadFile(meta)
	if err != nil {
		return Endpoint{}, fmt.Errorf("reading docker context %q: %w", name, err)
	}
	var m struct {
		Endpoints map[string]struct {
			Host string `json:"Host"`
		} `json:"Endpoints"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return Endpoint{}, fmt.Errorf("reading docker context %q (%s): %w", name, meta, err)
	}
	h := m.Endpoints["docker"].Host
	if h == "" {
		return Endpoint{}, fmt.Errorf("docker context %q (%s) has no docker endpoint", name, meta)
	}
	return Endpoint{Host: h, Context: name}, nil
}

func configDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".docker")
}

// Connect makes a client for the endpoint. It does not contact the daemon.
func Connect(ep Endpoint) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithHost(ep.Host)}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", ep.Host, err)
	}
	return c, nil
}

// Facts is what the daemon says about itself that matters for ids.
type Facts struct {
	Host       string
	Version    string
	Userns     bool   // SecurityOptions has name=userns
	Rootless   bool   // SecurityOptions has name=rootless
	RootDir    string // DockerRootDir, e.g. /var/lib/docker/100000.100000
	RootSuffix string // "100000.100000" when Userns, else ""
}

// ErrUnreachable wraps every failure to reach the daemon.
var ErrUnreachable = errors.New("docker daemon not reachable")

// ReadFacts asks the daemon for its Info, within a short timeout.
func ReadFacts(ctx context.Context, c *client.Client) (Facts, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return Facts{}, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.DaemonHost(), err)
	}
	info := res.Info
	f := Facts{Host: c.DaemonHost(), Version: info.ServerVersion, RootDir: info.DockerRootDir}
	for _, o := range info.SecurityOptions {
		for kv := range strings.SplitSeq(o, ",") {
			switch kv {
			case "name=userns":
				f.Userns = true
			case "name=rootless":
				f.Rootless = true
			}
		}
	}
	if f.Userns {
		f.RootSuffix = filepath.Base(f.RootDir)
	}
	return f, nil
}

// ContainerPID returns the host pid of a running container's init process.
func ContainerPID(ctx context.Context, c *client.Client, name string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := c.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		return 0, fmt.Errorf("inspecting container %s: %w", name, err)
	}
	st := res.Container.State
	if st == nil || !st.Running || st.Pid == 0 {
		return 0, fmt.Errorf("container %s is not running: its id maps exist only while it runs", name)
	}
	return st.Pid, nil
}
