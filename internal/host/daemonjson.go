// Package host reads the facts about the Docker host that live outside the
// daemon's API: /etc/docker/daemon.json and the command line of the running
// dockerd. It never writes.
package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// DefaultDaemonConfig is where dockerd reads its configuration by default.
const DefaultDaemonConfig = "/etc/docker/daemon.json"

// DaemonConfig is the part of daemon.json that volperm reads. Keys it does
// not know are kept in Raw.
type DaemonConfig struct {
	Path        string
	UsernsRemap string
	DataRoot    string
	Raw         map[string]json.RawMessage
}

// ReadDaemonConfig reads a daemon.json. A missing file is not an error: it
// returns nil, as dockerd runs with defaults then.
func ReadDaemonConfig(path string) (*DaemonConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading daemon config: %w", err)
	}
	return ParseDaemonConfig(data, path)
}

// ParseDaemonConfig parses daemon.json text; syntax errors name the line and
// column, as a user needs to find them.
func ParseDaemonConfig(data []byte, path string) (*DaemonConfig, error) {
	cfg := &DaemonConfig{Path: path}
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, nil
	}
	var raw any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, jsonError(data, path, err)
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: the daemon configuration must be a JSON object, found %s", path, jsonKind(raw))
	}
	_ = json.Unmarshal(data, &cfg.Raw)
	for key, dst := range map[string]*string{"userns-remap": &cfg.UsernsRemap, "data-root": &cfg.DataRoot} {
		v, present := obj[key]
		if !present {
			continue
		}
		s, ok := v.(string)
		if !ok {
			line, col := position(data, keyOffset(data, key))
			return nil, fmt.Errorf("%s:%d:%d: %q must be a string, found %s", path, line, col, key, jsonKind(v))
		}
		*dst = s
	}
	return cfg, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func jsonError(data []byte, path string, err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		// Offset counts the offending byte; point at it, except at the end
		// of a truncated document.
		off := int(syn.Offset)
		if off > 0 && off < len(data) || off == len(data) && !strings.Contains(syn.Error(), "unexpected end") {
			off--
		}
		line, col := position(data, off)
		return fmt.Errorf("%s:%d:%d: invalid JSON: %v", path, line, col, syn)
	}
	return fmt.Errorf("%s: invalid JSON: %w", path, err)
}

// position turns a byte offset into a 1-based line and column.
func position(data []byte, off int) (line, col int) {
	if off > len(data) {
		off = len(data)
	}
	line = 1 + bytes.Count(data[:off], []byte("\n"))
	col = off - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}

func keyOffset(data []byte, key string) int {
	i := bytes.Index(data, []byte(`"`+key+`"`))
	if i < 0 {
		return 0
	}
	return i + 1
}
