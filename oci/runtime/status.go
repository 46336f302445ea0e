package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/crivet/crivet/oci/monitor"
	"golang.org/x/sys/unix"
)

// State is a container's process state, as CRI names them.
type State string

const (
	StateCreated State = "created"
	StateRunning State = "running"
	StateExited  State = "exited"
	StateUnknown State = "unknown"
)

// Live: the container has an init process (created or running).
func (s State) Live() bool { return s == StateCreated || s == StateRunning }

// Status is a container's state as far as processes go.
type Status struct {
	State                 State
	Pid                   int // the init's host pid while created or running
	ExitCode              int32
	StartedAt, FinishedAt time.Time
	Reason, Message       string
}

// exitRecordWait bounds how long Status waits for a monitor that has just
// seen its init die to record the exit, rather than report a half state.
const exitRecordWait = 2 * time.Second

// Status reads the container's state from the monitor's exit record and
// runc's state, so it needs nothing from the process that created it.
func (r *Runtime) Status(ctx context.Context, id string) (Status, error) {
	if st, ok := r.cachedStatus(id); ok {
		return st, nil
	}
	epoch := r.exits.Load()
	st, err := r.status(ctx, id)
	if err == nil && r.exits.Load() == epoch {
		r.statuses.Store(id, st)
	}
	return st, err
}

// cachedStatus answers from the last status when it cannot have changed:
// an exit is final; a created or running container stays so until its
// monitor records an exit. While an exit watch runs, that record forgets
// the entry (see WatchExits), so ListContainers and ContainerStatus are
// answered from memory; without one, the init must still live and no
// exit record exist (two syscalls instead of five file reads and a lock
// probe). Start, Stop, Kill and Delete forget the entry.
func (r *Runtime) cachedStatus(id string) (Status, bool) {
	v, ok := r.statuses.Load(id)
	if !ok {
		return Status{}, false
	}
	st := v.(Status)
	switch st.State {
	case StateExited:
		return st, true
	case StateCreated, StateRunning:
		if r.watching.Load() > 0 {
			return st, true
		}
		if st.Pid <= 0 || unix.Kill(st.Pid, 0) != nil {
			return Status{}, false
		}
		var stat unix.Stat_t
		if err := unix.Stat(filepath.Join(r.cfg.StateDir, id, monitor.ExitFileName), &stat); err == nil {
			return Status{}, false
		}
		return st, true
	}
	return Status{}, false
}

func (r *Runtime) forgetStatus(id string) {
	r.exits.Add(1)
	r.statuses.Delete(id)
}

// forgetAll drops every cached status: the exit watch may have missed events.
func (r *Runtime) forgetAll() {
	r.exits.Add(1)
	r.statuses.Clear()
}

func (r *Runtime) status(ctx context.Context, id string) (Status, error) {
	dir, err := r.existing(id)
	if err != nil {
		return Status{}, err
	}
	st := Status{StartedAt: readStarted(dir)}
	if e, ok, err := monitor.ReadExit(dir); err != nil {
		return st, fmt.Errorf("status of container %s: %w", id, err)
	} else if ok {
		return exited(st, e), nil
	}
	// Fast path, no runc exec: a live monitor whose init is alive answers
	// for the container. Listing 200 containers must not cost 200 runc runs.
	starting := filepath.Join(dir, startingFile)
	_, startErr := os.Stat(starting)
	inFlight := startErr == nil
	if pid := monitor.InitPid(dir); pid > 0 && !inFlight && monitor.Alive(dir) && unix.Kill(pid, 0) == nil {
		if st.StartedAt.IsZero() {
			return Status{State: StateCreated, Pid: pid}, nil
		}
		st.State, st.Pid = StateRunning, pid
		return st, nil
	}
	c, err := r.handlerOf(id).runc.State(ctx, id)
	if err := runcErr(err); err != nil {
		if !errors.Is(err, ErrNotFound) {
			return st, fmt.Errorf("status of container %s: %w", id, err)
		}
		// Deleted from runc behind our back, or a create that crashed half way.
		if e, ok, _ := monitor.ReadExit(dir); ok {
			return exited(st, e), nil
		}
		st.State, st.Message = StateUnknown, "runc has no state for the container"
		return st, nil
	}
	switch c.Status {
	case "created":
		// Not started, whatever a start cut short by a crash wrote.
		return Status{State: StateCreated, Pid: c.Pid}, nil
	case "running", "paused":
		if st.StartedAt.IsZero() && inFlight {
			// A start still in flight (runc start done, its record not
			// yet), or one a crash cut short after runc start. Either
			// way the marker holds the start time; only the second is
			// this read's to finish: a read never repairs what a live
			// operation owns.
			st.StartedAt = readTime(starting)
			finishCutShortStart(ctx, id, dir)
			if st.StartedAt.IsZero() {
				// The start finished between the two reads.
				st.StartedAt = readStarted(dir)
			}
		}
		st.State, st.Pid = StateRunning, c.Pid
		return st, nil
	case "stopped":
		e, err := r.waitExit(ctx, id, dir, exitRecordWait)
		if err != nil {
			st.State, st.Message = StateUnknown, "the init has exited but its exit is not recorded yet"
			return st, nil
		}
		return exited(st, e), nil
	}
	st.State, st.Message = StateUnknown, "runc reports state "+c.Status
	return st, nil
}

// finishCutShortStart renames the start marker to the start record when
// no live Start holds it: the Start that wrote it died after runc start.
func finishCutShortStart(ctx context.Context, id, dir string) {
	starting := filepath.Join(dir, startingFile)
	mark, err := lockMarker(starting, false)
	switch {
	case errors.Is(err, errMarkerHeld), errors.Is(err, os.ErrNotExist):
		return // the live Start finishes its own record, or already has
	case err != nil:
		slog.WarnContext(ctx, "start record of a running container left unfinished", "container", id, "error", err)
		return
	}
	defer mark.Close()
	if err := os.Rename(starting, filepath.Join(dir, startedFile)); err != nil {
		slog.WarnContext(ctx, "start record of a running container left unfinished", "container", id, "error", err)
		return
	}
	slog.InfoContext(ctx, "finished the start record of a start cut short", "container", id)
}

func exited(st Status, e monitor.Exit) Status {
	st.State = StateExited
	st.ExitCode = e.Code
	st.FinishedAt = e.FinishedAt
	st.Reason = e.Reason
	st.Message = e.Message
	return st
}
