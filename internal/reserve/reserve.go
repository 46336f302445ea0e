// Package reserve keeps a few MiB of crivet's root file system free for
// the moments that matter when the disk is full: the daemon's start-up and
// the removals that free space.
//
// The space is held by a ballast file in the root. A full disk does not
// stop reads, but it does stop go.podman.io/storage from opening: loading
// the layer store after a crash rewrites its layer lists (an interrupted
// pull or container creation left an incomplete layer, which it deletes
// and then saves layers.json / volatile-layers.json through a temporary
// file), and a removal rewrites them too. With no byte free those writes
// fail with ENOSPC and the node has no runtime left to free space with.
// Deleting the ballast gives them room; operations that would consume
// space are refused (ErrNoSpace) while the ballast is not in place, so the
// room stays for metadata, and it is recreated once space returns.
package reserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/crivet/crivet/internal/errclass"
	"golang.org/x/sys/unix"
)

// ErrNoSpace: crivet's root file system has too little free space for an
// operation that consumes space (gRPC ResourceExhausted).
var ErrNoSpace = errclass.New(errclass.ResourceExhausted, "no space left on crivet's root file system")

// FileName is the ballast's name in the root.
const FileName = "space-reserve"

// DefaultSize is the ballast's default size: ample for the store's
// metadata rewrites (a few KiB per hundred layers) and crivet's records.
const DefaultSize = 8 << 20

// Reserve is the ballast of one root. Its methods are safe for concurrent use.
type Reserve struct {
	dir  string
	size int64
	log  *slog.Logger
	// freeSpace reports the bytes available to crivet on dir's file
	// system; a variable so unit tests can simulate a full disk.
	freeSpace func(dir string) (int64, error)

	mu   sync.Mutex
	held bool // the ballast file is in place, whole
}

// New returns the reserve of root; size 0 disables it (nothing is kept
// and nothing is refused: operations fail as the file system makes them).
// It touches nothing until Prepare.
func New(root string, size int64, log *slog.Logger) *Reserve {
	if log == nil {
		log = slog.Default()
	}
	return &Reserve{dir: root, size: size, log: log, freeSpace: statfsFree}
}

func (r *Reserve) path() string    { return filepath.Join(r.dir, FileName) }
func (r *Reserve) tmpPath() string { return r.path() + ".tmp" }

// Prepare runs at start-up, before anything else writes in the root. A
// disk with less than the reserve free is full for crivet's purposes: the
// ballast is deleted so that opening the store and reconciling what a
// crash left can write. Otherwise a missing ballast is created when twice
// its size is free (so that creating it does not itself fill the disk).
func (r *Reserve) Prepare() error {
	if r.size <= 0 {
		// A ballast of an earlier configuration is only wasted space now.
		return r.removeFiles()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// A ballast being created when crivet was killed is incomplete.
	if err := os.Remove(r.tmpPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("space reserve: remove %s: %w", r.tmpPath(), err)
	}
	fi, err := os.Stat(r.path())
	switch {
	case err == nil && fi.Size() == r.size:
		r.held = true
	case err == nil:
		// Another size was configured: replace it (below) when space allows.
		if err := os.Remove(r.path()); err != nil {
			return fmt.Errorf("space reserve: remove %s: %w", r.path(), err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("space reserve: %w", err)
	}
	free, err := r.freeSpace(r.dir)
	if err != nil {
		return fmt.Errorf("space reserve: %w", err)
	}
	if r.held {
		if free < r.size {
			r.releaseLocked("root file system full at start-up", free)
		}
		return nil
	}
	if free >= 2*r.size {
		if err := r.createLocked(); err != nil {
			// Not fatal: the daemon runs without a reserve, as before.
			r.log.Warn("space reserve not created", "path", r.path(), "error", err)
		}
		return nil
	}
	r.log.Warn("root file system nearly full at start-up: pulls and creations are refused until space is freed",
		"root", r.dir, "free_bytes", free, "needed_bytes", 2*r.size)
	return nil
}

// Check is called before an operation that consumes space (a pull, a pod
// or container creation). With the ballast in place the operation goes
// ahead (and fails with ENOSPC if the disk fills meanwhile). Without it,
// the ballast is recreated if space has returned; if not, the operation
// is refused with ErrNoSpace, keeping the released room for removals.
func (r *Reserve) Check() error {
	if r.size <= 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held {
		return nil
	}
	free, err := r.freeSpace(r.dir)
	if err != nil {
		return fmt.Errorf("space reserve: %w", err)
	}
	if free < 2*r.size {
		return fmt.Errorf("%w: %d bytes free in %s, %d needed before crivet pulls or creates again (remove containers, pods or images to free space)",
			ErrNoSpace, free, r.dir, 2*r.size)
	}
	if err := r.createLocked(); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("%w: recreate the space reserve: %v", ErrNoSpace, err)
		}
		// Not the disk: serve without a reserve rather than refuse.
		r.log.Warn("space reserve not recreated", "path", r.path(), "error", err)
		return nil
	}
	r.log.Info("root file system has space again: reserve recreated, pulls and creations accepted", "root", r.dir, "free_bytes", free-r.size)
	return nil
}

// Release deletes the ballast after a write failed with ENOSPC, so that
// stops and removals can write their records. It reports whether it
// freed anything (false: not held, or not deletable).
func (r *Reserve) Release(reason string) bool {
	if r.size <= 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.held {
		return false
	}
	free, _ := r.freeSpace(r.dir)
	r.releaseLocked(reason, free)
	return !r.held
}

// Watch recreates a released ballast once space returns, every interval
// until ctx ends, so that a daemon that pulls nothing for a while still has
// its reserve back before the next crash on a full disk.
func (r *Reserve) Watch(ctx context.Context, interval time.Duration) {
	if r.size <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !r.Held() {
				_ = r.Check() // a refusal here only means: still full
			}
		}
	}
}

// Held reports whether the ballast is in place.
func (r *Reserve) Held() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held
}

func (r *Reserve) releaseLocked(reason string, free int64) {
	if err := os.Remove(r.path()); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Error("space reserve: cannot delete the ballast", "path", r.path(), "error", err)
		return
	}
	r.held = false
	r.log.Warn("space reserve released: pulls and creations are refused until space is freed",
		"reason", reason, "root", r.dir, "free_bytes_before", free, "released_bytes", r.size)
}

// createLocked allocates the ballast under a temporary name and renames it
// into place, so that a crash mid-way never leaves a short ballast that
// would be taken for whole.
func (r *Reserve) createLocked() (err error) {
	tmp := r.tmpPath()
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// fallocate reserves the blocks without writing them; a file system
	// without it (or a sparse write) would hold no space, so zeros are
	// written instead.
	if ferr := unix.Fallocate(int(f.Fd()), 0, 0, r.size); ferr != nil {
		if errors.Is(ferr, unix.ENOSPC) {
			return fmt.Errorf("allocate %s: %w", tmp, ferr)
		}
		if _, werr := io.CopyN(f, zeroReader{}, r.size); werr != nil {
			return fmt.Errorf("write %s: %w", tmp, werr)
		}
		if serr := f.Sync(); serr != nil {
			return fmt.Errorf("sync %s: %w", tmp, serr)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, r.path()); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	r.held = true
	return nil
}

func (r *Reserve) removeFiles() error {
	for _, p := range []string{r.tmpPath(), r.path()} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("space reserve: remove %s: %w", p, err)
		}
	}
	return nil
}

// statfsFree is what an unprivileged writer may use (f_bavail): crivet
// runs as root and may dip into ext4's reserved blocks, but counting them
// as free would call a disk full for everyone else "not full".
func statfsFree(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
