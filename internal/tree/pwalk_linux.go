package tree

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

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
	parent, name := filepath.Dir(root), filepath.Base(root)
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", parent, err)
	}
	defer unix.Close(pfd)
	top := &Entry{Dir: root, Dirfd: pfd, Name: name, root: true}
	if err := unix.Fstatat(pfd, name, &top.Stat, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("reading %s: %w", root, err)
	}
	w := &pwalker{ctx: ctx, o: o, visit: visit, dev: top.Stat.Dev}
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
	buf := make([]byte, 64<<10)
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

		w.list(j, worker, buf)

		w.mu.Lock()
		w.pending--
		if w.pending == 0 {
			w.cond.Broadcast()
		}
		w.mu.Unlock()
	}
}

// list visits the entries of one directory and queues (or descends into)
// its subdirectories; it closes the directory's descriptor.
func (w *pwalker) list(j dirJob, worker int, buf []byte) {
	defer unix.Close(j.fd)
	if w.err.Load() != nil || w.ctx.Err() != nil {
		return
	}
	names, err := readNames(j.fd, buf)
	if err != nil {
		w.fail(fmt.Errorf("listing %s: %w", j.path, err))
		return
	}
	// One Entry for the whole directory: visit functions do not keep it.
	c := &Entry{Dir: j.path, Dirfd: j.fd, Worker: worker}
	for _, n := range names {
		c.Name = n
		if err := unix.Fstatat(j.fd, n, &c.Stat, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			w.fail(fmt.Errorf("reading %s: %w", c.Path(), err))
			return
		}
		isDir := c.IsDir()
		if isDir && c.Stat.Dev != w.dev && !w.o.CrossMounts {
			continue
		}
		if err := w.visit(c); err != nil {
			if errors.Is(err, ErrSkipDir) {
				continue
			}
			w.fail(err)
			return
		}
		if !isDir {
			continue
		}
		fd, err := openDir(c)
		if err != nil {
			w.fail(err)
			return
		}
		w.mu.Lock()
		if len(w.queue) < maxQueued {
			w.queue = append(w.queue, dirJob{fd: fd, path: c.Path()})
			w.pending++
			w.cond.Signal()
			w.mu.Unlock()
			continue
		}
		w.mu.Unlock()
		w.list(dirJob{fd: fd, path: c.Path()}, worker, buf) // names are copies: buf is free again
	}
}

func openDir(e *Entry) (int, error) {
	fd, err := unix.Openat(e.Dirfd, e.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening %s: %w", e.Path(), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != e.Stat.Ino || st.Dev != e.Stat.Dev {
		unix.Close(fd)
		return -1, fmt.Errorf("%s changed while it was being walked", e.Path())
	}
	return fd, nil
}

// readNames lists a directory through its descriptor with getdents.
func readNames(fd int, buf []byte) ([]string, error) {
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
