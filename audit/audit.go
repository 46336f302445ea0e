// Package audit writes one JSON line per signature-policy decision, for
// operators and their log pipelines. Each line is written (one write(2),
// unbuffered) before the decision's RPC answers, so a daemon killed right
// after answering has already handed the line to the kernel; a size limit
// rotates the file to <file>.1.
package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
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

// Log is an audit destination. A nil *Log discards.
type Log struct {
	mu      sync.Mutex
	path    string // "" for a non-file writer
	w       io.Writer
	f       *os.File
	size    int64
	maxSize int64
}

// Open opens the audit log at path: "stdout", or a file appended to and
// rotated to path+".1" once it would pass maxSize bytes (0: never).
func Open(path string, maxSize int64) (*Log, error) {
	if path == "stdout" {
		return &Log{w: os.Stdout}, nil
	}
	l := &Log{path: path, maxSize: maxSize}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	l.f, l.w, l.size = f, f, fi.Size()
	return nil
}

// Write appends r as one line. Errors are returned for the caller to log:
// an audit line that cannot be written never changes a decision.
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
	if l.f != nil && l.maxSize > 0 && l.size > 0 && l.size+int64(len(line)) > l.maxSize {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.w.Write(line)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// rotate keeps one previous file: path -> path.1 (replacing it).
func (l *Log) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	return l.open()
}

// Close closes the file, if any.
func (l *Log) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
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
