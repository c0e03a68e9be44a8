package tree

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/volperm/volperm/internal/benchtree"
	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/testenv"
)

// BenchmarkShiftVsChown is the Go form of scripts/bench-shift.sh: two
// identical generated trees (VOLPERM_BENCH_ENTRIES entries, default
// 200,000; the README's figures are for 1,000,000) in VOLPERM_BENCH_DIR
// (default a temporary directory), and per iteration chown -R on one, a
// shift and a no-op rerun on the other, and the find stat-walk floor.
// Every timed run starts warm: sync, caches dropped, the tree stat-walked.
// It reports times per run and the ratios (x-chown: how many times faster
// than chown -R; rerun/floor: the no-op rerun's share of the floor).
//
//	sudo VOLPERM_BENCH_ENTRIES=1000000 go test -run X -bench ShiftVsChown -benchtime 3x ./internal/tree
func BenchmarkShiftVsChown(b *testing.B) {
	testenv.NeedRoot(b)
	testenv.NeedCommand(b, "find")
	entries := 200000
	if v := os.Getenv("VOLPERM_BENCH_ENTRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			b.Fatalf("VOLPERM_BENCH_ENTRIES=%q: want a number of entries, at least 1000", v)
		}
		entries = n
	}
	dir := os.Getenv("VOLPERM_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		var err error
		if dir, err = os.MkdirTemp(dir, "volperm-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	ta, tb := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, root := range []string{ta, tb} {
		wg.Go(func() { errs[i] = benchtree.Generate(root, entries, 0, 1) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	host := idmap.HostIdentity()
	r := idmap.Map{{Container: 0, Host: 100000, Size: 65536}}
	remapped := idmap.Mapping{UID: r, GID: r}
	timed := func(tree string, run func() error) time.Duration {
		b.StopTimer() // the warm-up is not timed
		warm(b, tree)
		b.StartTimer()
		t := time.Now()
		if err := run(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t)
	}
	command := func(name string, args ...string) func() error {
		return func() error {
			out, err := exec.Command(name, args...).CombinedOutput()
			if err != nil {
				b.Fatalf("%s: %v\n%s", name, err, out)
			}
			return nil
		}
	}
	var chown, first, rerun, floor time.Duration
	var runs float64
	for i := 0; b.Loop(); i++ {
		s, owner := &Shift{From: host, To: remapped}, "100000:100000"
		if i%2 == 1 {
			s, owner = &Shift{From: remapped, To: host}, "0:0"
		}
		shift := func() error { _, err := s.Run(context.Background(), tb); return err }
		chown += timed(ta, command("chown", "-R", owner, ta))
		first += timed(tb, shift)
		rerun += timed(tb, shift)
		floor += timed(tb, command("find", tb, "-printf", "%U %G\n"))
		runs++
	}
	b.ReportMetric(chown.Seconds()/runs, "chown-s")
	b.ReportMetric(first.Seconds()/runs, "shift-s")
	b.ReportMetric(rerun.Seconds()/runs, "rerun-s")
	b.ReportMetric(floor.Seconds()/runs, "floor-s")
	b.ReportMetric(chown.Seconds()/first.Seconds(), "shift-x-chown")
	b.ReportMetric(chown.Seconds()/rerun.Seconds(), "rerun-x-chown")
	b.ReportMetric(rerun.Seconds()/floor.Seconds(), "rerun/floor")
}

// warm leaves every piece of a tree's metadata just read: written back,
// dropped from the caches, then stat-walked (see scripts/bench-shift.sh).
func warm(b *testing.B, tree string) {
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("find", tree, "-printf", "%U %G\n").Output(); err != nil || len(out) == 0 {
		b.Fatalf("stat-walking %s: %v", tree, err)
	}
}
