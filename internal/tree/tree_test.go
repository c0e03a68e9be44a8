package tree

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/volperm/volperm/internal/idmap"
	"github.com/volperm/volperm/internal/testenv"
)

func TestAmbiguous(t *testing.T) {
	host := idmap.Identity()
	r100 := idmap.Map{{Container: 0, Host: 100000, Size: 65536}}
	r150 := idmap.Map{{Container: 0, Host: 150000, Size: 65536}}
	r200 := idmap.Map{{Container: 0, Host: 200000, Size: 65536}}
	for _, tc := range []struct {
		name     string
		from, to idmap.Map
		want     bool
	}{
		{"host to remap", host, r100, false},
		{"remap to host", r100, host, false},
		{"disjoint ranges", r100, r200, false},
		{"overlapping ranges", r100, r150, true},
		{"same mapping", r100, r100, false},
		{"seed 004 host user first to plain range", idmap.Map{{Container: 0, Host: 1000, Size: 1}, {Container: 1, Host: 100000, Size: 65536}}, r100, true},
	} {
		_, _, got := Ambiguous(tc.from, tc.to)
		if got != tc.want {
			t.Errorf("%s: ambiguous = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParallelWalkVisitsEverythingOnce(t *testing.T) {
	root := t.TempDir()
	want := []string{root}
	for d := range 30 {
		dir := filepath.Join(root, fmt.Sprintf("d%d", d), "sub")
		os.MkdirAll(dir, 0o755)
		want = append(want, filepath.Dir(dir), dir)
		for f := range 20 {
			p := filepath.Join(dir, fmt.Sprintf("f%d", f))
			os.WriteFile(p, nil, 0o644)
			want = append(want, p)
		}
	}
	os.Symlink("/etc", filepath.Join(root, "d0", "etc"))
	want = append(want, filepath.Join(root, "d0", "etc"))
	var mu sync.Mutex
	var got []string
	err := ParallelWalk(context.Background(), root, Options{}, 3, func(e *Entry) error {
		mu.Lock()
		got = append(got, e.Path())
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("visited %d paths, want %d (the symlink to /etc must be visited, not followed)", len(got), len(want))
	}
}

// BenchmarkShift shifts a 5,000-entry tree back and forth; the comparison
// with chown -R is BenchmarkShiftVsChown and scripts/bench-shift.sh.
func BenchmarkShift(b *testing.B) {
	testenv.NeedRoot(b)
	root := b.TempDir()
	for d := range 100 {
		dir := filepath.Join(root, fmt.Sprintf("d%d", d))
		os.Mkdir(dir, 0o755)
		for f := range 49 {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", f)), nil, 0o644)
		}
	}
	host, r := idmap.HostIdentity(), idmap.Mapping{UID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}, GID: idmap.Map{{Container: 0, Host: 100000, Size: 65536}}}
	ctx := context.Background()
	var n int64
	for b.Loop() {
		c1, err := (&Shift{From: host, To: r}).Run(ctx, root)
		if err != nil {
			b.Fatal(err)
		}
		c2, err := (&Shift{From: r, To: host}).Run(ctx, root)
		if err != nil {
			b.Fatal(err)
		}
		n += c1.Seen + c2.Seen
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entries/s")
}

// TestSystemCallsWhileTheStackGrows makes the walk's system calls with a
// result buffer on the caller's stack, from goroutines whose stacks are
// filled to every depth in a range, so that at some depth a call on the
// way to the kernel would have to grow (move) the stack. The kernel must
// still fill the caller's buffer, not where the stack used to be.
func TestSystemCallsWhileTheStackGrows(t *testing.T) {
	fd, err := unix.Open(t.TempDir(), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var want unix.Stat_t
	must(t, unix.Fstat(fd, &want))
	for _, quick := range []bool{true, false} {
		e := &Entry{quick: quick}
		wrong := 0
		for depth := range 5000 {
			ino := make(chan uint64)
			go atDepth(depth, func() { ino <- fstatOnStack(e, fd) })
			if <-ino != want.Ino {
				wrong++
			}
		}
		if wrong > 0 {
			t.Errorf("quick=%v: %d of 5000 calls filled a stack buffer that had moved", quick, wrong)
		}
	}
}

//go:noinline
func fstatOnStack(e *Entry, fd int) uint64 {
	var st unix.Stat_t
	e.call6(unix.SYS_FSTAT, uintptr(fd), uintptr(unsafe.Pointer(&st)), 0, 0, 0, 0)
	return st.Ino
}

// atDepth calls f n small frames deeper.
//
//go:noinline
func atDepth(n int, f func()) {
	if n == 0 {
		f()
		return
	}
	atDepth(n-1, f)
}
