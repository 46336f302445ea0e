package monitor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxLogLine is the longest content one CRI log record carries; longer lines
// are split into P records. 16 KiB is containerd's default
// (max_container_log_line_size), so kubelet sees the same records from both.
const maxLogLine = 16 * 1024

// logFile appends CRI log records ("<RFC3339Nano> <stream> <P|F> <content>\n",
// k8s.io/cri-api's log format) to the path kubelet chose. Each record goes
// out in one write(2) on an O_APPEND file, so stdout and stderr records never
// interleave inside a line.
type logFile struct {
	mu     sync.Mutex
	dir    string // the pod's log directory, when known: path stays beneath it
	path   string
	f      *os.File
	failed bool // a write error was already reported
	diag   func(format string, args ...any)
}

func openLog(dir, path string, diag func(string, ...any)) (*logFile, error) {
	l := &logFile{dir: dir, path: path, diag: diag}
	if path == "" {
		return l, nil
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

// open opens the log for appending, as root, at a path kubelet's client
// chose: never through a symlink. Beneath the pod's log directory no
// component may be one (openat2 RESOLVE_NO_SYMLINKS, also at reopen, when
// the directory may have changed since the daemon checked it); without a
// directory, at least the file itself may not be (O_NOFOLLOW).
func (l *logFile) open() error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if rel, err := filepath.Rel(l.dir, l.path); l.dir != "" && err == nil {
		if rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
			return fmt.Errorf("open log: %s is not beneath %s", l.path, l.dir)
		}
		dirfd, err := unix.Open(l.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open log: %s: %w", l.dir, err)
		}
		defer unix.Close(dirfd)
		fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{Flags: uint64(flags), Mode: 0o640,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		if err != nil {
			return fmt.Errorf("open log %s: %w", l.path, err)
		}
		l.f = os.NewFile(uintptr(fd), l.path)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	f, err := os.OpenFile(l.path, flags, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	l.f = f
	return nil
}

// reopen starts a new file at the same path: kubelet renames the old one
// away when it rotates and then asks for this (CRI ReopenContainerLog).
func (l *logFile) reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.path == "" {
		return nil
	}
	old := l.f
	if err := l.open(); err != nil {
		return err
	}
	l.failed = false
	if old != nil {
		old.Close()
	}
	return nil
}

func (l *logFile) write(rec []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	// A full disk must not stall the container: drop the record, say so once.
	if _, err := l.f.Write(rec); err != nil && !l.failed {
		l.failed = true
		l.diag("write %s: %v (dropping log records until it works again)", l.path, err)
	} else if err == nil {
		l.failed = false
	}
}

func (l *logFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// lineSplitter turns one stream's raw output into records: a full line gives
// an F record, content longer than maxLogLine gives P records of maxLogLine
// bytes and an F for the rest, and content left when the stream ends gives a
// P record.
type lineSplitter struct {
	stream string // "stdout" or "stderr"
	log    *logFile
	buf    []byte // the current line, up to maxLogLine bytes
	rec    []byte // scratch for formatting one record
	now    func() time.Time
}

func newLineSplitter(stream string, log *logFile) *lineSplitter {
	return &lineSplitter{stream: stream, log: log, buf: make([]byte, 0, maxLogLine), now: time.Now}
}

func (s *lineSplitter) Write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		for len(seg) > 0 {
			// A full buffer is emitted only once more content arrives, so a
			// line of exactly maxLogLine bytes stays one F record.
			if len(s.buf) == maxLogLine {
				s.emit('P')
			}
			n := min(maxLogLine-len(s.buf), len(seg))
			s.buf = append(s.buf, seg[:n]...)
			seg = seg[n:]
		}
		if i < 0 {
			return
		}
		s.emit('F')
		p = p[i+1:]
	}
}

// flush is called at the end of the stream.
func (s *lineSplitter) flush() {
	if len(s.buf) > 0 {
		s.emit('P')
	}
}

func (s *lineSplitter) emit(tag byte) {
	r := s.rec[:0]
	r = s.now().AppendFormat(r, time.RFC3339Nano)
	r = append(r, ' ')
	r = append(r, s.stream...)
	r = append(r, ' ', tag, ' ')
	r = append(r, s.buf...)
	r = append(r, '\n')
	s.rec = r
	s.log.write(r)
	s.buf = s.buf[:0]
}
