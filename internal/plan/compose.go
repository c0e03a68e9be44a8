package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"go.yaml.in/yaml/v4"
)

// ComposeEdit adds to one service in a compose override file, which docker
// compose merges over compose.yaml when no -f is given. The user's own
// files are never touched; the override keeps its content and comments.
type ComposeEdit struct {
	File       string // the override file, e.g. /proj/compose.override.yaml
	Service    string
	GroupAdd   string // a gid to add to group_add
	UsernsMode string // a value for userns_mode
	Volume     string // a volume entry to add ("src:target:ro" replaces the target's mount)
}

// Describe implements Step.
func (c ComposeEdit) Describe() string {
	return fmt.Sprintf("add to service %s in %s:\n%s", c.Service, filepath.Base(c.File), c.YAML())
}

// YAML is the fragment the edit adds.
func (c ComposeEdit) YAML() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "services:\n  %s:\n", c.Service)
	if c.GroupAdd != "" {
		fmt.Fprintf(&b, "    group_add:\n      - %q\n", c.GroupAdd)
	}
	if c.UsernsMode != "" {
		fmt.Fprintf(&b, "    userns_mode: %q\n", c.UsernsMode)
	}
	if c.Volume != "" {
		fmt.Fprintf(&b, "    volumes:\n      - %q\n", c.Volume)
	}
	return b.String()
}

// Shell writes the merged override file, computed now, but only if the
// file is still what it was when the plan was made: a guarded, reviewable
// replacement rather than a blind append that could duplicate keys.
func (c ComposeEdit) Shell() string {
	old, _ := os.ReadFile(c.File)
	merged, changed, err := c.merge(old)
	if err != nil {
		return fmt.Sprintf("# cannot merge into %s: %v; add by hand:\n%s", c.File, err, comment(c.YAML()))
	}
	if !changed {
		return ""
	}
	f := Quote(c.File)
	guard := fmt.Sprintf("[ ! -e %s ]", f)
	if old != nil {
		sum := sha256.Sum256(old)
		guard = fmt.Sprintf("echo %s | sha256sum -c --status", Quote(hex.EncodeToString(sum[:])+"  "+c.File))
	}
	return fmt.Sprintf("%s && cat > %s.volperm-new <<'VOLPERM_EOF' && mv %s.volperm-new %s\n%sVOLPERM_EOF", guard, f, f, f, merged)
}

func comment(s string) string {
	var b bytes.Buffer
	for _, l := range bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n")) {
		b.WriteString("#   ")
		b.Write(l)
		b.WriteString("\n")
	}
	return b.String()
}

// Apply implements Step.
func (c ComposeEdit) Apply() (bool, error) {
	old, err := os.ReadFile(c.File)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("reading %s: %w", c.File, err)
	}
	merged, changed, err := c.merge(old)
	if err != nil || !changed {
		return false, err
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(c.File); err == nil {
		mode = st.Mode().Perm()
	}
	if err := WriteAtomic(c.File, merged, mode); err != nil {
		return false, err
	}
	return true, nil
}

func mapping(parent *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == key {
			return parent.Content[i+1]
		}
	}
	k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}
	v := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	parent.Content = append(parent.Content, k, v)
	return v
}

func setScalar(m *yaml.Node, key, val string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			if m.Content[i+1].Value == val {
				return false
			}
			m.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: val, Style: yaml.DoubleQuotedStyle}
			return true
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: val, Style: yaml.DoubleQuotedStyle})
	return true
}

func addToList(m *yaml.Node, key, val string) bool {
	var seq *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			seq = m.Content[i+1]
		}
	}
	if seq == nil {
		seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, seq)
	}
	if slices.ContainsFunc(seq.Content, func(n *yaml.Node) bool { return n.Value == val }) {
		return false
	}
	seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: val, Style: yaml.DoubleQuotedStyle})
	return true
}

// merge returns the override text with the edit, and whether it changed.
func (c ComposeEdit) merge(old []byte) ([]byte, bool, error) {
	var doc yaml.Node
	if len(bytes.TrimSpace(old)) > 0 {
		if err := yaml.Unmarshal(old, &doc); err != nil {
			return nil, false, fmt.Errorf("reading %s: %w", c.File, err)
		}
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, false, fmt.Errorf("%s: the top level is not a mapping", c.File)
	}
	svc := mapping(mapping(root, "services"), c.Service)
	changed := false
	if c.GroupAdd != "" {
		changed = addToList(svc, "group_add", c.GroupAdd) || changed
	}
	if c.UsernsMode != "" {
		changed = setScalar(svc, "userns_mode", c.UsernsMode) || changed
	}
	if c.Volume != "" {
		changed = addToList(svc, "volumes", c.Volume) || changed
	}
	if !changed {
		return old, false, nil
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, false, fmt.Errorf("writing %s: %w", c.File, err)
	}
	enc.Close()
	return b.Bytes(), true, nil
}

// AppendLine adds a line to a system file such as /etc/subuid, written
// atomically with its mode and owner kept; nothing when the line is there.
type AppendLine struct {
	File string
	Line string
}

// Describe implements Step.
func (a AppendLine) Describe() string { return fmt.Sprintf("add %q to %s", a.Line, a.File) }

// Shell implements Step.
func (a AppendLine) Shell() string {
	return fmt.Sprintf("grep -qxF %s %s || echo %s >> %s", Quote(a.Line), Quote(a.File), Quote(a.Line), Quote(a.File))
}

// Apply implements Step.
func (a AppendLine) Apply() (bool, error) {
	old, err := os.ReadFile(a.File)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("reading %s: %w", a.File, err)
	}
	for _, l := range bytes.Split(old, []byte("\n")) {
		if string(bytes.TrimSpace(l)) == a.Line {
			return false, nil
		}
	}
	data := slices.Clone(old)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, a.Line+"\n"...)
	mode, uid, gid := os.FileMode(0o644), -1, -1
	if st, err := os.Stat(a.File); err == nil {
		o := OwnerOf(st)
		mode, uid, gid = st.Mode().Perm(), o.UID, o.GID
	}
	if err := WriteAtomicAs(a.File, data, mode, uid, gid); err != nil {
		return false, err
	}
	return true, nil
}
