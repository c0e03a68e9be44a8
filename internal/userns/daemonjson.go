package userns

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/volperm/volperm/internal/host"
)

// SetRemap returns daemon.json text with "userns-remap" set to spec and
// every other byte kept: other keys, their order, values, indentation and
// the text around the object. The edit is textual, not a re-marshal: the
// value of an existing top-level "userns-remap" is replaced in place
// (every occurrence, when the key is repeated); otherwise a member is added
// after the last one, on a line of its own with the previous member's
// indentation, or inline for an object written on one line. Empty text
// gives a new file. Text that is not a JSON object is an error naming the
// file, line and column; nothing is guessed.
func SetRemap(data []byte, path, spec string) ([]byte, error) {
	if !utf8.ValidString(spec) || strings.ContainsFunc(spec, unicode.IsControl) {
		return nil, fmt.Errorf("userns-remap value %q: not a user name", spec)
	}
	val := jsonString(spec)
	if len(bytes.TrimSpace(data)) == 0 {
		return []byte("{\n  \"userns-remap\": " + val + "\n}\n"), nil
	}
	before, err := host.ParseDaemonConfig(data, path)
	if err != nil {
		return nil, err
	}
	if before.Raw == nil {
		return nil, &host.ConfigError{Path: path, Msg: "the daemon configuration must be a JSON object, found null"}
	}
	obj, err := scanObject(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := obj.replace(data, "userns-remap", val)
	if out == nil {
		out = obj.insert(data, "userns-remap", val)
	}
	// The edit must change that one key and nothing else.
	after, err := host.ParseDaemonConfig(out, path)
	if err != nil || after.UsernsRemap != spec || len(after.Raw) != len(before.Raw)+boolInt(!before.Has("userns-remap")) {
		return nil, fmt.Errorf("%s: editing userns-remap went wrong (%v); the file is left alone", path, err)
	}
	for k, v := range before.Raw {
		if k != "userns-remap" && !bytes.Equal(after.Raw[k], v) {
			return nil, fmt.Errorf("%s: editing userns-remap changed %q; the file is left alone", path, k)
		}
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// member is one top-level key and its value, as byte offsets.
type member struct {
	key              string
	keyStart, keyEnd int // the quoted key
	valStart, valEnd int
}

type object struct {
	open    int // offset of '{'
	close   int // offset of '}'
	members []member
}

// scanObject finds the top-level members of a JSON object.
func scanObject(data []byte) (*object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	o := &object{}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	o.open = int(dec.InputOffset()) - 1
	for dec.More() {
		prev := int(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		keyEnd := int(dec.InputOffset())
		keyStart := prev + bytes.IndexByte(data[prev:keyEnd], '"')
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		valEnd := int(dec.InputOffset())
		o.members = append(o.members, member{key: key, keyStart: keyStart, keyEnd: keyEnd, valStart: valEnd - len(raw), valEnd: valEnd})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	o.close = int(dec.InputOffset()) - 1
	if o.close < 0 || data[o.close] != '}' {
		return nil, fmt.Errorf("cannot find the end of the object")
	}
	return o, nil
}

// replace gives every member called key the value val; nil when there is
// none.
func (o *object) replace(data []byte, key, val string) []byte {
	var b bytes.Buffer
	at := 0
	for _, m := range o.members {
		if m.key != key {
			continue
		}
		b.Write(data[at:m.valStart])
		b.WriteString(val)
		at = m.valEnd
	}
	if at == 0 {
		return nil
	}
	b.Write(data[at:])
	return b.Bytes()
}

// insert adds "key": val after the last member (or into an empty object).
func (o *object) insert(data []byte, key, val string) []byte {
	var b bytes.Buffer
	if len(o.members) == 0 {
		inner := data[o.open+1 : o.close]
		b.Write(data[:o.open+1])
		if bytes.ContainsRune(inner, '\n') || len(bytes.TrimSpace(inner)) == 0 {
			b.WriteString("\n  " + jsonString(key) + ": " + val + "\n")
		} else {
			b.WriteString(jsonString(key) + ": " + val)
		}
		b.Write(data[o.close:])
		return b.Bytes()
	}
	last := o.members[len(o.members)-1]
	sep := string(data[last.keyEnd:last.valStart])
	if strings.ContainsAny(sep, "\n\r") {
		sep = ": "
	}
	lineStart := bytes.LastIndexByte(data[:last.keyStart], '\n') + 1
	b.Write(data[:last.valEnd])
	if lineStart > o.open {
		// Members on lines of their own: the same indentation.
		indent := data[lineStart:last.keyStart]
		if len(bytes.TrimSpace(indent)) > 0 {
			indent = []byte("  ")
		}
		b.WriteString(",\n" + string(indent))
	} else {
		b.WriteString(", ")
	}
	b.WriteString(jsonString(key) + sep + val)
	b.Write(data[last.valEnd:])
	return b.Bytes()
}
