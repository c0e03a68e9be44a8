package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/plan"
	"github.com/volperm/volperm/internal/remap"
	"github.com/volperm/volperm/internal/tree"
)

type shiftOptions struct {
	from, to, fromGID, toGID string
	dryRun, resume, cross    bool
	progress, journal        string
	workers                  int
}

func newShiftCmd(env Env) *cobra.Command {
	var o shiftOptions
	cmd := &cobra.Command{
		Use:   "shift PATH --from SPEC --to SPEC",
		Short: "Re-own a whole tree from one id mapping to another (chown -R done right)",
		Long: `Re-own a tree from one id mapping to another: data written before userns-remap was enabled,
a volume moved to a host with other subordinate ranges, or to rootless Docker. Each owner is read
as a host id under --from, turned into the container id, then into the host id under --to; ids
--from does not map are left alone and counted.

SPEC is host, remap:USER[:GROUP], rootless:USER or ranges:C:H:N[,C:H:N...]; --from-gid and
--to-gid give the gid side separately when it differs.

Unlike chown -R it keeps setuid/setgid bits and file capabilities (shifting a v3 capability's
root id), shifts the ids inside ACL entries, changes a hardlinked inode once, never follows a
symlink (every call is relative to an open directory), stays on one filesystem unless
--cross-mounts, and does not touch an entry that is already right. A journal records the shift:
an interrupted one is finished with --resume. When the two mappings overlap, the shift goes
through a temporary range in two phases, so a rerun can always tell shifted from not yet shifted.`,
		Example: `  volperm shift /srv/data --from host --to remap:dockremap
  volperm shift ./vol --from remap:old --to remap:new --dry-run
  volperm shift /srv/data --resume`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runShift(cmd.Context(), env, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "the mapping the tree is owned under now")
	f.StringVar(&o.to, "to", "", "the mapping to re-own it for")
	f.StringVar(&o.fromGID, "from-gid", "", "the gid side of --from, when it differs")
	f.StringVar(&o.toGID, "to-gid", "", "the gid side of --to, when it differs")
	f.BoolVar(&o.dryRun, "dry-run", false, "count what would change, change nothing")
	f.StringVar(&o.progress, "progress", "auto", "progress on stderr: auto (on a terminal), always or never")
	f.StringVar(&o.journal, "journal", "", "journal file (default: under /var/lib/volperm/shift)")
	f.BoolVar(&o.resume, "resume", false, "finish the interrupted shift the journal records")
	f.BoolVar(&o.cross, "cross-mounts", false, "also descend into other filesystems mounted below PATH")
	f.IntVar(&o.workers, "workers", 0, "parallel workers (default: two per CPU)")
	return cmd
}

// journal is the record of a shift in progress.
type shiftJournal struct {
	Path    string   `json:"path"`
	Specs   []string `json:"specs"` // from, to, from-gid, to-gid
	Phase   int      `json:"phase"` // phases completed
	Phases  int      `json:"phases"`
	Temp    uint32   `json:"temp,omitempty"`
	State   string   `json:"state"` // running or done
	Started string   `json:"started"`
}

func journalPath(abs string) string {
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join("/var/lib/volperm/shift", hex.EncodeToString(sum[:8])+".json")
}

func runShift(ctx context.Context, env Env, o shiftOptions, path string) error {
	if !map[string]bool{"auto": true, "always": true, "never": true}[o.progress] {
		return usagef("--progress %q: want auto, always or never", o.progress)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(abs, &st); err != nil {
		return fmt.Errorf("reading %s: %w", abs, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		target, _ := os.Readlink(abs)
		return fmt.Errorf("%s is a symlink (to %s): refusing to follow it; give the real path", abs, target)
	}
	jpath := o.journal
	if jpath == "" {
		jpath = journalPath(abs)
	}
	prev, err := readJournal(jpath)
	if err != nil {
		return err
	}
	specs := []string{o.from, o.to, o.fromGID, o.toGID}
	switch {
	case o.resume && prev == nil && (o.from == "" || o.to == ""):
		return fmt.Errorf("--resume: no journal at %s for %s", jpath, abs)
	case o.resume && prev == nil:
		// Killed before it wrote anything: nothing to resume, so start.
		o.resume = false
	case o.resume && prev.State == "done":
		fmt.Fprintf(env.Stdout, "the shift of %s recorded in %s is complete: nothing to resume\n", abs, jpath)
		return nil
	case o.resume:
		if (o.from != "" || o.to != "") && fmt.Sprint(specs) != fmt.Sprint(prev.Specs) {
			return fmt.Errorf("--resume: the journal %s records --from %s --to %s, not what was given", jpath, prev.Specs[0], prev.Specs[1])
		}
		specs = prev.Specs
	case prev != nil && prev.State == "running" && !o.dryRun:
		return fmt.Errorf("an interrupted shift of %s (--from %s --to %s) is recorded in %s: finish it with --resume", abs, prev.Specs[0], prev.Specs[1], jpath)
	}
	if specs[0] == "" || specs[1] == "" {
		return usagef("give --from and --to (or --resume)")
	}
	from, to, err := shiftMappings(specs)
	if err != nil {
		return err
	}

	j := &shiftJournal{Path: abs, Specs: specs, Phases: 1, State: "running", Started: time.Now().UTC().Format(time.RFC3339)}
	if o.resume {
		j = prev
	}
	phases := []idmap.Mapping{from, to}
	ulo, uhi, uamb := tree.Ambiguous(from.UID, to.UID)
	glo, ghi, gamb := tree.Ambiguous(from.GID, to.GID)
	if uamb || gamb {
		if prev != nil && prev.State == "done" && fmt.Sprint(prev.Specs) == fmt.Sprint(specs) {
			fmt.Fprintf(env.Stdout, "the journal %s says this shift of %s completed (%s); the mappings overlap, so it is not run again\n", jpath, abs, prev.Started)
			return nil
		}
		temp, err := tempMapping(from, to)
		if err != nil {
			lo, hi := ulo, uhi
			if !uamb {
				lo, hi = glo, ghi
			}
			return fmt.Errorf("the two mappings overlap (host ids %d-%d are both shifted and a result of the shift) and no free temporary range exists: %w", lo, hi, err)
		}
		if !o.resume {
			j.Phases, j.Temp = 2, temp.UID[0].Host
		}
		phases = []idmap.Mapping{from, temp, to}
		fmt.Fprintf(env.Stderr, "volperm: the mappings overlap (host ids %d-%d): shifting in two phases through host ids %d.. so that an interrupted run can be resumed\n", min(ulo, glo), max(uhi, ghi), j.Temp)
	}
	if !o.dryRun {
		if err := writeJournal(jpath, j); err != nil {
			return err
		}
	}

	// Entries whose owner stays have their ACLs and capability shifted in
	// the first run of a shift (and when resuming it); a rerun of a
	// completed one leaves them be, for speed.
	staying := prev == nil || prev.State != "done" || fmt.Sprint(prev.Specs) != fmt.Sprint(specs)
	show := o.progress == "always" || o.progress == "auto" && isTerminal(os.Stderr)
	var total Counts2
	start := time.Now()
	for i := j.Phase; i < len(phases)-1; i++ {
		s := &tree.Shift{From: phases[i], To: phases[i+1], DryRun: o.dryRun, CrossMounts: o.cross, Workers: o.workers, Repair: o.resume, Staying: staying}
		if show {
			estimate := usedInodes(abs)
			s.Progress = func(c tree.Counts) { progressLine(env.Stderr, c, estimate, start) }
		}
		c, err := s.Run(ctx, abs)
		if show {
			fmt.Fprint(env.Stderr, "\r\033[K")
		}
		total.add(c)
		if err != nil {
			fmt.Fprintf(env.Stdout, "%s\n", total.summary(o.dryRun))
			return fmt.Errorf("shifting %s: %w (the journal %s records it: rerun with --resume)", abs, err, jpath)
		}
		if !o.dryRun {
			j.Phase = i + 1
			if err := writeJournal(jpath, j); err != nil {
				return err
			}
		}
	}
	if !o.dryRun {
		j.State = "done"
		if err := writeJournal(jpath, j); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stdout, "%s\n", total.summary(o.dryRun))
	return nil
}

// Counts2 adds up the phases of a shift.
type Counts2 struct{ tree.Counts }

func (c *Counts2) add(n tree.Counts) {
	// Two phases see and change the same entries.
	c.Seen, c.Changed, c.Unmapped, c.Errors = max(c.Seen, n.Seen), max(c.Changed, n.Changed), max(c.Unmapped, n.Unmapped), c.Errors+n.Errors
}

func (c Counts2) summary(dry bool) string {
	verb := "changed"
	if dry {
		verb = "would change"
	}
	return fmt.Sprintf("%d entries seen, %d %s, %d left alone (ids the source mapping does not map), %d errors", c.Seen, c.Changed, verb, c.Unmapped, c.Errors)
}

func progressLine(w io.Writer, c tree.Counts, estimate uint64, start time.Time) {
	rate := float64(c.Seen) / time.Since(start).Seconds()
	est := ""
	if estimate > 0 {
		est = fmt.Sprintf("/~%d", estimate)
	}
	fmt.Fprintf(w, "\r\033[Kshift: %d%s entries, %.0f/s, %d changed, %d left alone", c.Seen, est, rate, c.Changed, c.Unmapped)
}

// usedInodes estimates the entries to walk: the inodes in use on the
// filesystem (an upper bound when the tree is part of it).
func usedInodes(path string) uint64 {
	var s unix.Statfs_t
	if unix.Statfs(path, &s) != nil || s.Files < s.Ffree {
		return 0
	}
	return s.Files - s.Ffree
}

func shiftMappings(specs []string) (from, to idmap.Mapping, err error) {
	// Only remap: specs read /etc/subuid the way the installed dockerd does,
	// so only they ask it its version.
	var v idmap.Version
	asked := false
	get := func(spec string) (idmap.Mapping, error) {
		if strings.HasPrefix(spec, "remap:") && !asked {
			v, _ = daemonVersion("", nil)
			asked = true
		}
		return remap.MappingSpec(spec, remap.HostFiles, v)
	}
	if from, err = get(specs[0]); err != nil {
		return from, to, fmt.Errorf("--from: %w", err)
	}
	if to, err = get(specs[1]); err != nil {
		return from, to, fmt.Errorf("--to: %w", err)
	}
	if specs[2] != "" {
		m, err := get(specs[2])
		if err != nil {
			return from, to, fmt.Errorf("--from-gid: %w", err)
		}
		from.GID = m.GID
	}
	if specs[3] != "" {
		m, err := get(specs[3])
		if err != nil {
			return from, to, fmt.Errorf("--to-gid: %w", err)
		}
		to.GID = m.GID
	}
	return from, to, nil
}

// tempMapping is a mapping of the same container ids onto host ids near
// the top of the id space, free of both mappings' inputs and outputs.
func tempMapping(from, to idmap.Mapping) (idmap.Mapping, error) {
	var size uint64
	for _, m := range []idmap.Map{from.UID, from.GID, to.UID, to.GID} {
		for _, e := range m {
			if e.Size == 1<<32-1 {
				continue // the host identity's single extent
			}
			size = max(size, uint64(e.Container)+uint64(e.Size))
		}
	}
	if size == 0 || size > 1<<30 {
		return idmap.Mapping{}, errors.New("the container ranges are too large for a temporary range")
	}
	t := idmap.Map{{Container: 0, Host: uint32(4294967294 - size), Size: uint32(size)}}
	temp := idmap.Mapping{UID: t, GID: t}
	for _, pair := range [][2]idmap.Map{{from.UID, t}, {t, to.UID}, {from.GID, t}, {t, to.GID}} {
		if _, _, amb := tree.Ambiguous(pair[0], pair[1]); amb {
			return idmap.Mapping{}, fmt.Errorf("the temporary range %d+%d overlaps them too", t[0].Host, size)
		}
	}
	return temp, nil
}

func readJournal(path string) (*shiftJournal, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the shift journal: %w", err)
	}
	var j shiftJournal
	if err := json.Unmarshal(data, &j); err != nil || len(j.Specs) != 4 {
		return nil, fmt.Errorf("%s is not a volperm shift journal: %v", path, err)
	}
	return &j, nil
}

func writeJournal(path string, j *shiftJournal) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing the shift journal: %w", err)
	}
	data, _ := json.MarshalIndent(j, "", "  ")
	return plan.WriteAtomic(path, append(data, '\n'), 0o600)
}
