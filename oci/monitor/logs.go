package monitor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
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
	path   string
	f      *os.File
	failed bool // a write error was already reported
	diag   func(format string, args ...any)
}

func openLog(path string, diag func(string, ...any)) (*logFile, error) {
	l := &logFile{path: path, diag: diag}
	if path == "" {
		return l, nil
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *logFile) open() error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
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
