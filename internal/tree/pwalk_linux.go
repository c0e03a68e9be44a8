package tree

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ParallelWalk visits everything below root (root included) with workers
// goroutines, each listing whole directories: parents are visited before
// their children, siblings in any order. visit must be safe for concurrent
// use. Directory descriptors are bounded: when many directories wait, a
// worker descends into the next one itself instead of queueing it.
func ParallelWalk(ctx context.Context, root string, o Options, workers int, visit func(*Entry) error) error {
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	top, err := rootEntry(root)
	if err != nil {
		return err
	}
	defer unix.Close(top.Dirfd)
	w := &pwalker{ctx: ctx, o: o, visit: visit, dev: top.Stat.Dev, quick: !o.CrossMounts && localFS(root)}
	w.cond = sync.NewCond(&w.mu)
	if err := visit(top); err != nil {
		if errors.Is(err, ErrSkipDir) {
			return nil
		}
		return err
	}
	if !top.IsDir() {
		return nil
	}
	fd, err := openDir(top)
	if err != nil {
		return err
	}
	w.pending = 1
	w.queue = append(w.queue, dirJob{fd: fd, path: root})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.work(i)
		}()
	}
	wg.Wait()
	for _, j := range w.queue {
		unix.Close(j.fd)
	}
	if e := w.err.Load(); e != nil {
		return *e
	}
	return ctx.Err()
}

type dirJob struct {
	fd   int
	path string
}

type pwalker struct {
	ctx   context.Context
	o     Options
	visit func(*Entry) error
	dev   uint64
	quick bool

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []dirJob
	pending int // directories queued or being listed
	err     atomic.Pointer[error]
}

// maxQueued bounds the open directory descriptors waiting in the queue.
const maxQueued = 256

func (w *pwalker) fail(err error) {
	w.err.CompareAndSwap(nil, &err)
	w.mu.Lock()
	w.cond.Broadcast()
	w.mu.Unlock()
}

func (w *pwalker) work(worker int) {
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && w.pending > 0 && w.err.Load() == nil {
			w.cond.Wait()
		}
		if len(w.queue) == 0 || w.err.Load() != nil {
			w.mu.Unlock()
			return
		}
		j := w.queue[len(w.queue)-1] // LIFO: depth first keeps the queue short
		w.queue = w.queue[:len(w.queue)-1]
		w.mu.Unlock()

		w.list(j, worker)

		w.mu.Lock()
		w.pending--
		if w.pending == 0 {
			w.cond.Broadcast()
		}
		w.mu.Unlock()
	}
}

// list visits the entries of one directory and queues (or descends into)
// its subdirectories; it closes the directory's descriptor. It reads the
// raw getdents records and hands each name to the kernel straight from
// the buffer (d_name is NUL-terminated there): no allocation per entry.
func (w *pwalker) list(j dirJob, worker int) {
	c := &Entry{Dir: j.path, Dirfd: j.fd, Worker: worker, quick: w.quick}
	defer c.close(j.fd)
	if w.err.Load() != nil || w.ctx.Err() != nil {
		return
	}
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	buf := *bp
	for {
		r, errno := c.call6(unix.SYS_GETDENTS64, uintptr(j.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
		if errno != 0 {
			w.fail(fmt.Errorf("listing %s: %w", j.path, errno))
			return
		}
		n := int(r)
		if n <= 0 {
			return
		}
		for off := 0; off < n; {
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			name := buf[off+19 : off+reclen]
			off += reclen
			l := bytes.IndexByte(name, 0)
			if l <= 0 || l == 1 && name[0] == '.' || l == 2 && name[0] == '.' && name[1] == '.' {
				continue
			}
			c.Name, c.name0 = unsafe.String(&name[0], l), &name[0]
			if !w.entry(c, worker) {
				return
			}
		}
	}
}

var direntBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// entry stats and visits one name of a directory being listed; false
// stops the listing.
func (w *pwalker) entry(c *Entry, worker int) bool {
	if err := c.fstatat(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return true
		}
		w.fail(fmt.Errorf("reading %s: %w", c.Path(), err))
		return false
	}
	if w.o.skip(c, w.dev) {
		return true
	}
	isDir := c.IsDir()
	if err := w.visit(c); err != nil {
		if errors.Is(err, ErrSkipDir) {
			return true
		}
		w.fail(err)
		return false
	}
	if !isDir {
		return true
	}
	fd, err := openDir(c)
	if err != nil {
		w.fail(err)
		return false
	}
	w.mu.Lock()
	if len(w.queue) < maxQueued {
		w.queue = append(w.queue, dirJob{fd: fd, path: c.Path()})
		w.pending++
		w.cond.Signal()
		w.mu.Unlock()
		return true
	}
	w.mu.Unlock()
	w.list(dirJob{fd: fd, path: c.Path()}, worker)
	return true
}

// fstatat is fstatat(2) with AT_SYMLINK_NOFOLLOW on the entry's name, into
// its Stat.
func (e *Entry) fstatat() error {
	_, errno := e.call6(unix.SYS_NEWFSTATAT, uintptr(e.Dirfd), uintptr(unsafe.Pointer(e.cname())), uintptr(unsafe.Pointer(&e.Stat)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
	return errnoErr(errno)
}

func openDir(e *Entry) (int, error) {
	r, errno := e.call6(unix.SYS_OPENAT, uintptr(e.Dirfd), uintptr(unsafe.Pointer(e.cname())), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0, 0, 0)
	if errno != 0 {
		return -1, fmt.Errorf("opening %s: %w", e.Path(), errno)
	}
	fd := int(r)
	var st unix.Stat_t
	if _, errno := e.call6(unix.SYS_FSTAT, r, uintptr(unsafe.Pointer(&st)), 0, 0, 0, 0); errno != 0 || st.Ino != e.Stat.Ino || st.Dev != e.Stat.Dev {
		e.close(fd)
		return -1, fmt.Errorf("%s changed while it was being walked", e.Path())
	}
	return fd, nil
}
