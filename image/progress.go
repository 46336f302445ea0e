package image

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/archive"
)

// Defaults of the pull limits (see Config).
const (
	DefaultPullProgressTimeout = 5 * time.Minute
	DefaultMaxImageSize        = 20 << 30
	DefaultMaxLayers           = 256
)

const (
	// progressInterval is how often the library reports a blob's offset.
	progressInterval = 200 * time.Millisecond
	// progressLogInterval is how often a long pull logs how far it got.
	progressLogInterval = 15 * time.Second
	// filePollInterval is how often the pull's temporary files are looked at.
	filePollInterval = 50 * time.Millisecond
	// maxGzipRatio bounds what a gzip (deflate) stream can inflate to.
	maxGzipRatio = 1032
)

// pullWatch watches one pull: it cancels the pull when the registry sends
// nothing for the progress timeout, or when the image inflates past the
// size limit, and it logs the pull's progress.
//
// The library has no hook on the HTTP transport nor on the uncompressed
// layer stream; it has two things to watch instead:
//   - copy.Options.Progress, the offsets of the blobs being fetched;
//   - the storage destination writes each blob, as it arrives, to a file
//     in the pull's own BigFilesTemporaryDir, and only decompresses it to
//     hash it; layers are unpacked into the store after the blob is
//     complete. Following those files shows the registry's bytes as they
//     arrive (including the tail a progress report has not covered yet)
//     and lets the watch inflate them in step with the download, so a
//     compression bomb is stopped before its layer is unpacked.
type pullWatch struct {
	s       *Service
	ref     string
	timeout time.Duration
	limit   int64
	cancel  context.CancelCauseFunc
	tmpDir  string
	start   time.Time

	mu          sync.Mutex
	last        time.Time
	copying     bool
	sawArtifact bool
	active      map[digest.Digest]*artifact
	files       map[string]int64
	bytes       uint64
	blobsDone   int
	layersTotal int
	reused      int
	// gzipBounded: even at gzip's worst ratio the declared blobs fit the
	// limit, so gzip blobs need not be inflated to be counted.
	gzipBounded bool

	unpackedMu sync.Mutex
	unpacked   int64

	progress chan types.ProgressProperties
	done     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

type artifact struct {
	size, offset int64
}

// stallError is the cause of a pull cancelled for lack of progress.
type stallError struct{ d time.Duration }

func (e *stallError) Error() string        { return fmt.Sprintf("no progress for %s: registry stalled", e.d) }
func (e *stallError) Is(target error) bool { return target == ErrPullStalled }

// limitError is a pull refused by max_image_size or max_layers.
type limitError struct{ msg string }

func (e *limitError) Error() string        { return e.msg }
func (e *limitError) Is(target error) bool { return target == ErrImageLimit }

func tooLarge(limit int64) error {
	return &limitError{fmt.Sprintf("image exceeds max_image_size (%d bytes)", limit)}
}

// newPullWatch starts watching a pull whose context cancel cancels. The
// registry phase (manifests, signatures) is watched from now on. Only a
// pull that copies gets a temporary directory (tmpDir) for its blobs; a
// check fetches manifests and signatures into memory and writes nothing.
func (s *Service) newPullWatch(ref string, cancel context.CancelCauseFunc, copies bool) (*pullWatch, error) {
	return s.newWatch("pull-", ref, s.cfg.PullProgressTimeout, cancel, copies)
}

// newWatch is newPullWatch for any copy into the store: timeout 0 watches
// only the size limit (an import reads a local file, not a registry).
func (s *Service) newWatch(prefix, ref string, timeout time.Duration, cancel context.CancelCauseFunc, copies bool) (*pullWatch, error) {
	tmp := ""
	if copies {
		var err error
		if tmp, err = os.MkdirTemp(filepath.Join(s.cfg.Root, "tmp"), prefix); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	w := &pullWatch{
		s: s, ref: ref, timeout: timeout, limit: s.cfg.MaxImageSize,
		cancel: cancel, tmpDir: tmp, start: now, last: now,
		active: map[digest.Digest]*artifact{}, files: map[string]int64{},
		progress: make(chan types.ProgressProperties), done: make(chan struct{}),
	}
	w.wg.Add(2)
	go w.consume()
	go w.tick()
	if copies {
		w.wg.Add(1)
		go w.followFiles()
	}
	return w, nil
}

// kick records progress made outside the copy (a manifest, signatures).
func (w *pullWatch) kick() {
	w.mu.Lock()
	w.last = time.Now()
	w.mu.Unlock()
}

// startCopy is called with the manifest the copy will store.
func (w *pullWatch) startCopy(m *remoteManifest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.copying, w.last = true, time.Now()
	w.layersTotal = len(m.Layers)
	// The config is a blob too; sizes are checked on download.
	declared := m.Config.Size + m.LayerBytes
	w.gzipBounded = w.limit > 0 && declared >= 0 && declared <= w.limit/maxGzipRatio
}

// stop ends the watch and removes the pull's temporary files.
func (w *pullWatch) stop() {
	w.stopOnce.Do(func() {
		close(w.done)
		w.wg.Wait()
		if w.tmpDir != "" {
			_ = os.RemoveAll(w.tmpDir)
		}
	})
}

func (w *pullWatch) consume() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			return
		case p := <-w.progress:
			w.mu.Lock()
			w.last = time.Now()
			w.sawArtifact = true
			switch p.Event {
			case types.ProgressEventNewArtifact:
				w.active[p.Artifact.Digest] = &artifact{size: p.Artifact.Size}
			case types.ProgressEventRead:
				w.bytes += p.OffsetUpdate
				if a := w.active[p.Artifact.Digest]; a != nil {
					a.offset = int64(p.Offset)
				}
			case types.ProgressEventDone:
				w.bytes += p.OffsetUpdate
				w.blobsDone++
				delete(w.active, p.Artifact.Digest)
			case types.ProgressEventSkipped:
				w.reused++
				delete(w.active, p.Artifact.Digest)
			}
			w.mu.Unlock()
		}
	}
}

func (w *pullWatch) tick() {
	defer w.wg.Done()
	period := time.Second
	if w.timeout > 0 {
		period = min(max(w.timeout/10, 10*time.Millisecond), time.Second)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	nextLog := w.start.Add(progressLogInterval)
	for {
		select {
		case <-w.done:
			return
		case now := <-t.C:
			if w.timeout > 0 && w.stalled(now) {
				w.s.log.Warn("pull stalled", "reference", w.ref, "timeout", w.timeout.String())
				w.cancel(&stallError{w.timeout})
			}
			if now.After(nextLog) {
				nextLog = now.Add(progressLogInterval)
				w.mu.Lock()
				attrs := []any{"reference", w.ref, "bytes", w.bytes, "blobs_done", w.blobsDone, "layers", w.layersTotal, "elapsed", now.Sub(w.start).Round(time.Millisecond).String()}
				w.mu.Unlock()
				w.s.log.Info("pull progress", attrs...)
			}
		}
	}
}

// stalled: no progress for the timeout while the registry owes us data.
// Time spent unpacking a complete blob into the store is not the
// registry's: it never counts.
func (w *pullWatch) stalled(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.last) < w.timeout {
		return false
	}
	if !w.copying || !w.sawArtifact {
		// Manifests and signatures, before or at the start of the copy.
		return true
	}
	for _, a := range w.active {
		if !w.received(a) {
			return true
		}
	}
	return false
}

// received: every byte of the blob arrived (the library reports offsets
// only now and then; its temporary file shows the tail).
func (w *pullWatch) received(a *artifact) bool {
	if a.size <= 0 {
		return false
	}
	if a.offset >= a.size {
		return true
	}
	for _, size := range w.files {
		if size == a.size {
			return true
		}
	}
	return false
}

// followFiles polls the pull's temporary directory: growing files are
// progress; each new file is inflated and counted against the size limit.
func (w *pullWatch) followFiles() {
	defer w.wg.Done()
	t := time.NewTicker(filePollInterval)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		_ = filepath.WalkDir(w.tmpDir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			w.mu.Lock()
			old, known := w.files[p]
			w.files[p] = info.Size()
			if info.Size() > old {
				w.last = time.Now()
			}
			w.mu.Unlock()
			if !known && w.limit > 0 {
				w.wg.Add(1)
				go w.inflate(p)
			}
			return nil
		})
	}
}

// inflate decompresses a blob file as it is being written and adds its
// uncompressed size to the pull's total.
func (w *pullWatch) inflate(path string) {
	defer w.wg.Done()
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	br := bufio.NewReaderSize(&tailReader{f: f, path: path, done: w.done}, 64<<10)
	head, _ := br.Peek(10)
	w.mu.Lock()
	bounded := w.gzipBounded
	w.mu.Unlock()
	if bounded && archive.DetectCompression(head) == archive.Gzip {
		return
	}
	rd, err := archive.DecompressStream(br)
	if err != nil {
		return
	}
	defer rd.Close()
	buf := make([]byte, 256<<10)
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			w.unpackedMu.Lock()
			w.unpacked += int64(n)
			over := w.unpacked > w.limit
			w.unpackedMu.Unlock()
			if over {
				w.cancel(tooLarge(w.limit))
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// tailReader reads a file that another goroutine is still writing: at its
// end it waits for more, until the watch stops or the file is removed.
type tailReader struct {
	f    *os.File
	path string
	done <-chan struct{}
}

func (t *tailReader) Read(p []byte) (int, error) {
	for {
		n, err := t.f.Read(p)
		if n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
			return n, err
		}
		if _, err := os.Stat(t.path); err != nil {
			return 0, io.EOF
		}
		select {
		case <-t.done:
			return 0, io.EOF
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// summary is logged when the pull ends.
func (w *pullWatch) summary(err error) {
	w.mu.Lock()
	took, bytes := time.Since(w.start), w.bytes
	attrs := []any{"reference", w.ref, "bytes", bytes, "layers", w.layersTotal, "layers_reused", w.reused,
		"duration", took.Round(time.Millisecond).String()}
	w.mu.Unlock()
	w.s.obs.Pull(bytes, took, err)
	if err != nil {
		w.s.log.Warn("pull failed", append(attrs, "error", err.Error())...)
		return
	}
	w.s.log.Info("pull finished", attrs...)
}
