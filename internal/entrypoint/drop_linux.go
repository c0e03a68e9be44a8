package entrypoint

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// refuseUnsafe refuses the installs that would turn volperm into a way to
// become root: a setuid or setgid binary (what fixuid asks for), or a start
// as a user other than root, where it could do nothing anyway.
func refuseUnsafe() error {
	ruid, euid := syscall.Getuid(), syscall.Geteuid()
	if ruid != euid || syscall.Getgid() != syscall.Getegid() {
		return fmt.Errorf("refusing to run setuid or setgid (real uid %d, effective uid %d): remove the bit (chmod ug-s) and start the container as root instead", ruid, euid)
	}
	if fi, err := os.Stat("/proc/self/exe"); err == nil && fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
		return fmt.Errorf("refusing to run: this binary is installed setuid or setgid (%v), which lets any user of the image become root; chmod ug-s it", fi.Mode())
	}
	if euid != 0 {
		return fmt.Errorf("started as uid %d, not root: volperm needs root to change ids and then drops it itself; start the container as root (no --user, no USER in the image after the entrypoint)", euid)
	}
	return nil
}

// startGroups are the supplementary groups the container started with.
func startGroups() ([]uint32, error) {
	gs, err := syscall.Getgroups()
	if err != nil {
		return nil, fmt.Errorf("reading the supplementary groups: %w", err)
	}
	out := make([]uint32, len(gs))
	for i, g := range gs {
		out[i] = uint32(g)
	}
	return out, nil
}

// drop sets the groups, gid and uid of every thread of the process. The
// syscall package applies them to all threads (a raw setuid would change
// only the calling one), and the thread is pinned until exec.
func drop(t *target) error {
	runtime.LockOSThread()
	gs := make([]int, len(t.groups))
	for i, g := range t.groups {
		gs[i] = int(g)
	}
	if err := syscall.Setgroups(gs); err != nil {
		return fmt.Errorf("setting the groups %v: %w", t.groups, credErr(err, "gid"))
	}
	if err := syscall.Setgid(int(t.gid)); err != nil {
		return fmt.Errorf("setting gid %d: %w", t.gid, credErr(err, "gid"))
	}
	if err := syscall.Setuid(int(t.uid)); err != nil {
		return fmt.Errorf("setting uid %d: %w", t.uid, credErr(err, "uid"))
	}
	return nil
}

func credErr(err error, what string) error {
	if err == syscall.EPERM {
		return fmt.Errorf("%w: the container lacks CAP_SET%sID (started with --cap-drop?)", err, strings.ToUpper(what[:1]))
	}
	if err == syscall.EINVAL {
		return fmt.Errorf("%w: the %s is not mapped in this container's user namespace (a userns-remap or rootless daemon maps only its subordinate range)", err, what)
	}
	return err
}

// status is what /proc/self/status says about credentials.
type status struct {
	uid, gid               [4]uint64
	groups                 []uint32
	capEff, capPrm, capAmb uint64
}

func readStatus() (status, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return status{}, fmt.Errorf("reading /proc/self/status: %w", err)
	}
	return parseStatus(data)
}

func parseStatus(data []byte) (status, error) {
	var s status
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		var err error
		switch k {
		case "Uid", "Gid":
			dst := &s.uid
			if k == "Gid" {
				dst = &s.gid
			}
			if len(f) != 4 {
				return s, fmt.Errorf("/proc/self/status: %s: want 4 ids, got %q", k, v)
			}
			for i := range f {
				if dst[i], err = strconv.ParseUint(f[i], 10, 32); err != nil {
					return s, fmt.Errorf("/proc/self/status: %s: %w", k, err)
				}
			}
			seen++
		case "Groups":
			for _, g := range f {
				n, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return s, fmt.Errorf("/proc/self/status: Groups: %w", err)
				}
				s.groups = append(s.groups, uint32(n))
			}
		case "CapEff", "CapPrm", "CapAmb":
			if len(f) != 1 {
				return s, fmt.Errorf("/proc/self/status: %s: %q", k, v)
			}
			n, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil {
				return s, fmt.Errorf("/proc/self/status: %s: %w", k, err)
			}
			switch k {
			case "CapEff":
				s.capEff = n
			case "CapPrm":
				s.capPrm = n
			default:
				s.capAmb = n
			}
			seen++
		}
	}
	if seen != 5 {
		return s, fmt.Errorf("/proc/self/status: missing Uid, Gid or capability lines")
	}
	return s, nil
}

// verify checks that the drop took: every uid and gid (real, effective,
// saved, filesystem) is the target's, the groups are exactly the target's,
// and, for a non-root target, no capability is left and setuid(0) fails.
func verify(t *target) error {
	s, err := readStatus()
	if err != nil {
		return err
	}
	for i := range 4 {
		if s.uid[i] != uint64(t.uid) || s.gid[i] != uint64(t.gid) {
			return fmt.Errorf("after the drop the ids are uid %v gid %v, not %d:%d", s.uid, s.gid, t.uid, t.gid)
		}
	}
	if !sameSet(s.groups, t.groups) {
		return fmt.Errorf("after the drop the groups are %v, not %v", s.groups, t.groups)
	}
	if t.uid == 0 {
		return nil
	}
	if s.capEff|s.capPrm|s.capAmb != 0 {
		return fmt.Errorf("capabilities remain after the drop (CapEff %016x CapPrm %016x CapAmb %016x)", s.capEff, s.capPrm, s.capAmb)
	}
	// The way back: a saved uid of 0 would let setuid(0) succeed. Tried on
	// this thread only, so that a success can be seen and is fatal.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_SETUID, 0, 0, 0); errno == 0 {
		return fmt.Errorf("setuid(0) still succeeds after the drop")
	}
	return nil
}

func sameSet(a, b []uint32) bool {
	set := func(s []uint32) []uint32 { return slices.Compact(slices.Sorted(slices.Values(s))) }
	return slices.Equal(set(a), set(b))
}
