package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/crivet/crivet/oci/monitor"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// Attach connects the streams to the running container through its
// monitor: output from now on, stdin when the container was created with
// stdin, terminal resizes when it has a tty. It returns when the container
// exits, when ctx ends (kubelet's streaming server cancels it when the
// client goes away), or when the client's stdin ends (see below).
func (r *Runtime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	dir, err := r.existing(id)
	if err != nil {
		return err
	}
	cfg, err := monitor.ReadConfig(dir)
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	s := monitor.Streams{}
	if in != nil && cfg.Stdin {
		s.Stdin = in
		// As kubectl expects (and containerd does): when the client's
		// stdin ends, a stdin-once container without a tty gets its stdin
		// closed and the client keeps its output until the container
		// exits; any other attach ends there (the container's stdin stays
		// open for the next one).
		s.DetachOnStdinEOF = !(cfg.StdinOnce && !cfg.Tty)
	}
	if out != nil {
		s.Stdout = out
	}
	if errw != nil {
		s.Stderr = errw
	}
	if resize != nil && cfg.Tty {
		sizes := make(chan monitor.WinSize)
		s.Resize = sizes
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			defer close(sizes)
			for {
				select {
				case ws, ok := <-resize:
					if !ok {
						return
					}
					select {
					case sizes <- monitor.WinSize{Width: ws.Width, Height: ws.Height}:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if err := monitor.Attach(ctx, dir, s); err != nil {
		if errors.Is(err, monitor.ErrGone) {
			return fmt.Errorf("attach to container %s: %w", id, ErrNotRunning)
		}
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	return nil
}

// ReopenLog makes the container's monitor start a new log file at its log
// path (CRI ReopenContainerLog, after kubelet renamed the old one away).
func (r *Runtime) ReopenLog(ctx context.Context, id string) error {
	dir, err := r.existing(id)
	if err != nil {
		return err
	}
	if err := monitor.Reopen(ctx, dir); err != nil {
		if errors.Is(err, monitor.ErrGone) {
			return fmt.Errorf("reopen log of container %s: %w", id, ErrNotRunning)
		}
		return fmt.Errorf("reopen log of container %s: %w", id, err)
	}
	return nil
}
