// Package plan holds the fixes volperm proposes as small, idempotent steps.
// Each step says what it does, renders itself as the POSIX shell a person
// can review and run, and applies itself natively — checking the current
// state first, so a second run changes nothing (and leaves ctimes alone).
//
// Steps never make anything world-writable, never widen access beyond the
// ids they name, never follow a symlink, and refuse to re-own system
// paths.
package plan

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Step is one action.
type Step interface {
	// Describe says what the step does, in a line.
	Describe() string
	// Shell is the equivalent POSIX shell command.
	Shell() string
	// Apply performs the step; changed is false when the state was already
	// as wanted.
	Apply() (changed bool, err error)
}

// Quote quotes a word for POSIX sh when it needs it.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:=,@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellOf joins the shell text of steps with &&.
func ShellOf(steps []Step) string {
	var parts []string
	for _, s := range steps {
		if sh := s.Shell(); sh != "" {
			parts = append(parts, sh)
		}
	}
	return strings.Join(parts, " && ")
}

// systemDirs are host paths volperm never re-owns: chown there breaks the
// host (or a package manager's idea of it).
var systemDirs = []string{"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var", "/var/lib", "/var/lib/docker", "/var/run", "/home", "/tmp", "/opt", "/srv", "/mnt", "/media"}

// systemTrees are trees whose every path is a system path.
var systemTrees = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys", "/usr", "/var/lib/docker"}

// ErrSystemPath is returned for a step that would re-own a system path.
var ErrSystemPath = errors.New("refusing to change the owner of a system path")

// CheckOwnable refuses system paths: the top-level directories of the
// filesystem and everything under /etc, /usr, /bin, /sbin, /lib*, /boot,
// /proc, /sys, /dev and /var/lib/docker.
func CheckOwnable(path string) error {
	p := filepath.Clean(path)
	for _, d := range systemDirs {
		if p == d {
			return fmt.Errorf("%w: %s belongs to the host; grant access with an ACL instead", ErrSystemPath, p)
		}
	}
	for _, d := range systemTrees {
		if strings.HasPrefix(p, d+"/") {
			return fmt.Errorf("%w: %s is under %s, which belongs to the host and its packages; grant access with an ACL instead", ErrSystemPath, p, d)
		}
	}
	return nil
}
