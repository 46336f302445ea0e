package monitor

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

func dial(ctx context.Context, dir string) (net.Conn, error) {
	path, release, err := unixPath(dir, socketName)
	if err != nil {
		return nil, err
	}
	defer release()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if isGone(err) {
			return nil, ErrGone
		}
		return nil, err
	}
	return c, nil
}

// call sends one request and reads its one-line reply; ctx ends the wait.
func call(ctx context.Context, dir string, req request) (reply, error) {
	var rep reply
	c, err := dial(ctx, dir)
	if err != nil {
		return rep, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if err := writeJSONLine(c, req); err != nil {
		return rep, err
	}
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		// The monitor died mid-call (a normal exit answers first).
		return rep, fmt.Errorf("%w: %v", ErrGone, err)
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}

// Reopen makes the monitor of dir start a new log file at the container's
// log path (CRI ReopenContainerLog, after kubelet rotated the old one away).
func Reopen(ctx context.Context, dir string) error {
	_, err := call(ctx, dir, request{Op: "reopen"})
	return err
}

// Wait returns the container's exit once it is recorded, or ctx's error. It
// returns ErrGone when no monitor is left to record one.
func Wait(ctx context.Context, dir string) (Exit, error) {
	if e, ok, err := ReadExit(dir); ok || err != nil {
		return e, err
	}
	rep, err := call(ctx, dir, request{Op: "wait"})
	if errors.Is(err, ErrGone) {
		// The record is written before the socket goes away, so a monitor
		// that just finished has left it.
		if e, ok, rerr := ReadExit(dir); ok || rerr != nil {
			return e, rerr
		}
		return Exit{}, err
	}
	if err != nil {
		return Exit{}, err
	}
	if rep.Exit == nil {
		return Exit{}, errors.New("monitor replied without an exit")
	}
	return *rep.Exit, nil
}

// WinSize is a terminal size in character cells.
type WinSize struct{ Width, Height uint16 }

// Streams are an attach client's ends. Nil Stdin sends nothing; nil
// Stdout/Stderr drop that stream.
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Resize         <-chan WinSize
	// DetachOnStdinEOF ends the attach when Stdin ends, after passing the
	// end on to the monitor; otherwise the attach lasts until the
	// container exits.
	DetachOnStdinEOF bool
}

// Attach connects s to the running container of dir. Output flows from the
// moment of attaching; it returns nil when the container exits, ctx's error
// when ctx ends, ErrGone when there is no running container to attach to.
func Attach(ctx context.Context, dir string, s Streams) error {
	c, err := dial(ctx, dir)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := writeJSONLine(c, request{Op: "attach", Stdin: s.Stdin != nil}); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	done := make(chan struct{})
	defer close(done)
	var wmu sync.Mutex
	send := func(kind byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(c, kind, p)
	}
	var detached atomic.Bool
	if s.Stdin != nil {
		go func() {
			buf := make([]byte, ioChunk)
			for {
				n, err := s.Stdin.Read(buf)
				if n > 0 && send(frameStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					send(frameStdinClose, nil)
					if s.DetachOnStdinEOF {
						detached.Store(true)
						c.Close()
					}
					return
				}
			}
		}()
	}
	if s.Resize != nil {
		go func() {
			for {
				select {
				case ws, ok := <-s.Resize:
					if !ok {
						return
					}
					var p [4]byte
					binary.BigEndian.PutUint16(p[:], ws.Width)
					binary.BigEndian.PutUint16(p[2:], ws.Height)
					if send(frameResize, p[:]) != nil {
						return
					}
				case <-done:
					return
				}
			}
		}()
	}

	br := bufio.NewReaderSize(c, ioChunk)
	buf := make([]byte, ioChunk)
	for {
		kind, p, err := readFrame(br, buf)
		if err != nil {
			if detached.Load() {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("attach: monitor hung up: %w", err)
		}
		var w io.Writer
		switch kind {
		case frameStdout:
			w = s.Stdout
		case frameStderr:
			w = s.Stderr
		case frameExit:
			return nil
		}
		if w != nil {
			if _, err := w.Write(p); err != nil {
				return fmt.Errorf("attach: write output: %w", err)
			}
		}
	}
}
