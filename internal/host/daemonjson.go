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

	"github.com/volperm/volperm/internal/idmap"
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

// Has reports whether the file sets key at the top level (to anything,
// even "" or null: dockerd counts it as set).
func (c *DaemonConfig) Has(key string) bool {
	_, ok := c.Raw[key]
	return ok
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
		return nil, &ConfigError{Path: path, Msg: "the daemon configuration must be a JSON object, found " + jsonKind(raw)}
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
			return nil, &ConfigError{Path: path, Line: line, Col: col, Msg: fmt.Sprintf("%q must be a string, found %s", key, jsonKind(v))}
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
		return &ConfigError{Path: path, Line: line, Col: col, Msg: "invalid JSON: " + syn.Error()}
	}
	return &ConfigError{Path: path, Msg: "invalid JSON: " + err.Error()}
}

// ConfigError is a daemon.json that cannot be read: where, and why.
type ConfigError struct {
	Path      string
	Line, Col int // 1-based; 0 when the problem is not at one place
	Msg       string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.Path, e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// daemonConfig has the one field of dockerd's Config whose type volperm
// checks as dockerd does; it is named Config because dockerd's error
// texts name the type ("Go struct field Config.userns-remap").
type daemonConfig struct {
	RemappedRoot string `json:"userns-remap,omitempty"`
}

// Refusal is the line dockerd of version v prints before exiting when
// its configuration file at path holds data, or "" when dockerd accepts
// what volperm checks: the JSON syntax, the top-level kind, and the type
// of userns-remap (daemon/config/config.go getConflictFreeConfiguration,
// wrapped by daemon/command loadDaemonCliConfig). Observed on dockerd
// 20.10.24, which decodes the first JSON value with a json.Decoder: an
// empty file is "EOF", a truncated one "unexpected EOF", and anything
// after the object is ignored. From 23.0 dockerd trims the file, accepts
// it empty, and uses json.Unmarshal, which refuses trailing data (moby
// issue 44905).
func Refusal(data []byte, path string, v idmap.Version) string {
	var msg string
	if v.Less(idmap.Version{Major: 23}) {
		msg = decodeRefusal(data)
	} else {
		msg = unmarshalRefusal(bytes.TrimSpace(data))
	}
	if msg == "" {
		return ""
	}
	return fmt.Sprintf("unable to configure the Docker daemon with file %s: %s", path, msg)
}

func decodeRefusal(data []byte) string {
	var m map[string]any
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&m); err != nil {
		return err.Error()
	}
	var c daemonConfig
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&c); err != nil {
		return configTypeError(err)
	}
	return ""
}

func unmarshalRefusal(data []byte) string {
	if len(data) == 0 {
		return ""
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return err.Error()
	}
	var c daemonConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return configTypeError(err)
	}
	return ""
}

// configTypeError spells a type error as dockerd's Config type gives it.
func configTypeError(err error) string {
	return strings.Replace(err.Error(), "Go struct field daemonConfig.", "Go struct field Config.", 1)
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
