// Package audit writes one JSON line per signature-policy decision, for
// operators and their log pipelines. Each line is written (one write(2),
// unbuffered) before the decision's RPC answers, so a daemon killed right
// after answering has already handed the line to the kernel; a size limit
// rotates the file to <file>.1.
//
// The daemon and `crivet image import` (another process) append to the
// same file. Every write and every rotation therefore runs under an flock
// on <file>.lock, and each write first checks that its descriptor is still
// the file at the path: whoever finds the file past its limit rotates it,
// and the others follow to the new file instead of writing into <file>.1.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Record is one decision.
type Record struct {
	Time      time.Time `json:"time"`
	Stage     string    `json:"stage"` // pull, create, image-volume
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod,omitempty"`
	Container string    `json:"container,omitempty"`
	// Reference is the image as the client named it; Resolved is the
	// fully qualified reference it was verified as.
	Reference string `json:"reference"`
	Resolved  string `json:"resolved,omitempty"`
	Image     string `json:"image,omitempty"`
	Digest    string `json:"digest,omitempty"`
	// Policy is the file that applied and PolicyDigest its sha256.
	Policy       string `json:"policy,omitempty"`
	PolicyDigest string `json:"policyDigest,omitempty"`
	// Requirements are the types of the requirements that applied to the
	// reference's scope ("sigstoreSigned", "reject", ...): all of them
	// had to accept.
	Requirements []string `json:"requirements,omitempty"`
	Outcome      string   `json:"outcome"` // allowed, rejected, error
	Reason       string   `json:"reason,omitempty"`
	DurationMS   float64  `json:"durationMs"`
}

// LockSuffix names the lock file beside the audit file that serialises
// writers and rotation across processes.
const LockSuffix = ".lock"

// lockRetries bounds how often a lock is retaken because its file was
// replaced while we waited: each retry means another process removed it.
const lockRetries = 10

var errClosed = errors.New("audit log: closed")

// Log is an audit destination. A nil *Log discards.
type Log struct {
	mu      sync.Mutex
	path    string    // "" for a non-file writer
	w       io.Writer // the non-file writer
	f       *os.File  // nil when the last (re)open failed: the next write retries
	fi      os.FileInfo
	lock    *os.File // path+LockSuffix, nil until opened
	maxSize int64
	closed  bool
}

// Open opens the audit log at path: "stdout", or a file appended to and
// rotated to path+".1" once it would pass maxSize bytes (0: never).
func Open(path string, maxSize int64) (*Log, error) {
	if path == "stdout" {
		return &Log{w: os.Stdout}, nil
	}
	l := &Log{path: path, maxSize: maxSize}
	unlock, err := l.lockFile()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := l.current(); err != nil {
		l.closeFiles()
		return nil, err
	}
	return l, nil
}

// lockFile takes the cross-process lock. A lock held on a lock file that
// was since removed or replaced excludes nobody, so it is checked against
// the path after it is taken and retaken on the file the path now names.
func (l *Log) lockFile() (unlock func(), err error) {
	lockPath := l.path + LockSuffix
	for range lockRetries {
		if l.lock == nil {
			f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				return nil, fmt.Errorf("audit log: open lock: %w", err)
			}
			l.lock = f
		}
		fd := int(l.lock.Fd())
		if err := flock(fd, unix.LOCK_EX); err != nil {
			return nil, fmt.Errorf("audit log: lock %s: %w", lockPath, err)
		}
		held, err1 := l.lock.Stat()
		named, err2 := os.Stat(lockPath)
		if err1 == nil && err2 == nil && os.SameFile(held, named) {
			return func() { _ = flock(fd, unix.LOCK_UN) }, nil
		}
		// Closing drops the flock on the stale file.
		l.lock.Close()
		l.lock = nil
	}
	return nil, fmt.Errorf("audit log: lock %s: replaced %d times while waiting for it", lockPath, lockRetries)
}

func flock(fd, how int) error {
	for {
		// The Go runtime's preemption signals interrupt a blocked flock.
		if err := unix.Flock(fd, how); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// current makes l.f the file the path names now, (re)opening it when it
// was removed, replaced or rotated by another process, or when an earlier
// open or rotation failed, and returns its size. Called under the lock, so
// the size is the file's real size, whoever wrote it.
func (l *Log) current() (int64, error) {
	if l.f != nil {
		named, err := os.Stat(l.path)
		if err == nil && os.SameFile(l.fi, named) {
			return named.Size(), nil
		}
		l.f.Close()
		l.f, l.fi = nil, nil
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("audit log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, fmt.Errorf("audit log: %w", err)
	}
	size := fi.Size()
	if size > 0 {
		// A writer without the lock (an older crivet) may have left a
		// partial line: end it, so the next record is a line of its own.
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err == nil && last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				_ = f.Truncate(size)
				f.Close()
				return 0, fmt.Errorf("audit log: end partial line of %s: %w", l.path, err)
			}
			size++
		}
	}
	l.f, l.fi = f, fi
	return size, nil
}

// Write appends r as one line. Errors are returned for the caller to log:
// an audit line that cannot be written never changes a decision. A line is
// written whole or not at all, and a failure (disk full, file removed, a
// rotation that could not rename) does not outlive its cause: the next
// write reopens the file.
func (l *Log) Write(r Record) error {
	if l == nil {
		return nil
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errClosed
	}
	if l.path == "" {
		if _, err := l.w.Write(line); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		return nil
	}
	unlock, err := l.lockFile()
	if err != nil {
		return err
	}
	defer unlock()
	size, err := l.current()
	if err != nil {
		return err
	}
	var rotateErr error
	if l.maxSize > 0 && size > 0 && size+int64(len(line)) > l.maxSize {
		if rotateErr = l.rotate(); rotateErr == nil {
			if size, err = l.current(); err != nil {
				return fmt.Errorf("%w (after rotating to %s.1)", err, l.path)
			}
		} else if size, err = l.current(); err != nil {
			return errors.Join(rotateErr, err)
		}
		// A rename that failed leaves the file in place: the record goes
		// there, past the limit, rather than nowhere.
	}
	n, err := l.f.Write(line)
	if err != nil {
		// err is a *PathError: it names the file.
		werr := fmt.Errorf("audit log: %w", err)
		if n > 0 {
			// Half a line would be glued to the next record: cut it.
			if terr := l.f.Truncate(size); terr != nil {
				// The partial line stays; reopening ends it with a newline.
				l.f.Close()
				l.f, l.fi = nil, nil
				return errors.Join(werr, fmt.Errorf("audit log: remove partial line (%d of %d bytes) from %s: %w", n, len(line), l.path, terr))
			}
		}
		return fmt.Errorf("%w (record not written)", werr)
	}
	if rotateErr != nil {
		return fmt.Errorf("%w (record written, file past its size limit)", rotateErr)
	}
	return nil
}

// rotate keeps one previous file: path -> path.1 (replacing it). Under the
// lock, so one process rotates and the others follow at their next write.
func (l *Log) rotate() error {
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	l.f.Close()
	l.f, l.fi = nil, nil
	return nil
}

// Close closes the file and its lock, if any. Writes after Close fail.
func (l *Log) Close() error {
	if l == nil || l.path == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return l.closeFiles()
}

func (l *Log) closeFiles() error {
	var err error
	if l.f != nil {
		err = l.f.Close()
		l.f, l.fi = nil, nil
	}
	if l.lock != nil {
		l.lock.Close()
		l.lock = nil
	}
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// ReadFile reads the records of an audit file, oldest first.
func ReadFile(path string) ([]Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	var out []Record
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return out, fmt.Errorf("audit log %s: line %q: %w", path, line, err)
		}
		out = append(out, r)
	}
	return out, nil
}
