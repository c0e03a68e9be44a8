package userns

import (
	"os"
	"path/filepath"
	"sort"
)

// Store is what a Docker root directory holds, as far as a user notices:
// images, containers and named volumes. dockerd keeps one store per
// remapped root pair (<data-root>/<uid>.<gid>) and the plain one in the
// data root itself, so switching a remap on or off hides the others.
type Store struct {
	Dir        string   `json:"dir"` // as on the host
	Exists     bool     `json:"exists"`
	Images     int      `json:"images"`
	Containers int      `json:"containers"`
	Volumes    []string `json:"volumes,omitempty"`
}

// CountStore counts a root directory on disk: image configs under
// image/<storage driver>/imagedb/content/sha256, containers/ entries and
// volumes/ directories (metadata.db aside).
func CountStore(dir string) Store {
	s := Store{}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return s
	}
	s.Exists = true
	drivers, _ := os.ReadDir(filepath.Join(dir, "image"))
	for _, d := range drivers {
		imgs, _ := os.ReadDir(filepath.Join(dir, "image", d.Name(), "imagedb", "content", "sha256"))
		s.Images += len(imgs)
	}
	ctrs, _ := os.ReadDir(filepath.Join(dir, "containers"))
	s.Containers = len(ctrs)
	vols, _ := os.ReadDir(filepath.Join(dir, "volumes"))
	for _, v := range vols {
		if v.IsDir() {
			s.Volumes = append(s.Volumes, v.Name())
		}
	}
	sort.Strings(s.Volumes)
	return s
}
