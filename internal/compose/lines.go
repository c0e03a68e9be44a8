package compose

import (
	"os"

	"go.yaml.in/yaml/v4"
)

// lineIndex finds where services and their volumes are written, for
// reports that point at a line. The last file that mentions a service wins,
// as with merging.
type lineIndex struct {
	files []parsedFile
}

type parsedFile struct {
	path string
	root *yaml.Node
}

type location struct {
	file string
	line int
}

func findLines(files []string) lineIndex {
	var idx lineIndex
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var doc yaml.Node
		if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
			continue
		}
		idx.files = append(idx.files, parsedFile{path: f, root: doc.Content[0]})
	}
	return idx
}

func child(n *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

func (idx lineIndex) serviceNode(name string) (string, *yaml.Node, *yaml.Node) {
	for i := len(idx.files) - 1; i >= 0; i-- {
		_, svcs := child(idx.files[i].root, "services")
		if k, v := child(svcs, name); k != nil {
			return idx.files[i].path, k, v
		}
	}
	return "", nil, nil
}

func (idx lineIndex) service(name string) location {
	f, k, _ := idx.serviceNode(name)
	if k == nil {
		return location{}
	}
	return location{file: f, line: k.Line}
}

// raw returns a service key's scalar value as written, before
// interpolation.
func (idx lineIndex) raw(name, key string) string {
	for i := len(idx.files) - 1; i >= 0; i-- {
		_, svcs := child(idx.files[i].root, "services")
		_, svc := child(svcs, name)
		if _, v := child(svc, key); v != nil && v.Kind == yaml.ScalarNode {
			return v.Value
		}
	}
	return ""
}

// volume returns the line of the i-th volume entry of a service, in the
// file that defines the service last.
func (idx lineIndex) volume(name string, i int) int {
	_, _, svc := idx.serviceNode(name)
	if _, vols := child(svc, "volumes"); vols != nil && vols.Kind == yaml.SequenceNode && i < len(vols.Content) {
		return vols.Content[i].Line
	}
	return 0
}
