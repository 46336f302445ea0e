package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"
	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/oci/monitor"
	"golang.org/x/sys/unix"
)

// CreateOptions describe one container; Bundle holds its config.json.
type CreateOptions struct {
	ID, Bundle, LogPath string
	// LogDir, when set, is the directory LogPath must stay beneath (the
	// pod's log directory): the monitor opens the log through it without
	// following symlinks.
	LogDir                string
	Tty, Stdin, StdinOnce bool
	// Handler names the runtime handler whose runc creates and then runs
	// the container; "" is the default.
	Handler string
	// Restore, when set, restores the container from a checkpoint's CRIU
	// images (`runc restore`) instead of creating it: it is running when
	// Create returns, and Start only records that it started.
	Restore *monitor.Restore
}

// Create starts the container's monitor, which runs `runc create`. It
// returns once the container is "created" (CRI's CreateContainer; Start
// runs it), or with runc's error text, leaving nothing behind.
func (r *Runtime) Create(ctx context.Context, o CreateOptions) error {
	dir, err := r.dir(o.ID)
	if err != nil {
		return err
	}
	h, err := r.handler(o.Handler)
	if err != nil {
		return fmt.Errorf("create container %s: %w", o.ID, err)
	}
	if o.Bundle == "" {
		return fmt.Errorf("create container %s: no bundle: %w", o.ID, ErrInvalidArgument)
	}
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return err
	}
	spec, err := readSpec(bundle)
	if err != nil {
		return fmt.Errorf("create container %s: %w", o.ID, err)
	}
	memcg, err := r.memoryCgroup(spec)
	if err != nil {
		return fmt.Errorf("create container %s: %w: %w", o.ID, err, ErrInvalidArgument)
	}
	// runc keeps <root>/<id>; one there without our directory is not ours
	// to clean up after a failure, so refuse before touching anything.
	if _, err := os.Stat(filepath.Join(h.Root, o.ID)); err == nil {
		return fmt.Errorf("create container %s: %w", o.ID, ErrAlreadyExists)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create container %s: %w", o.ID, ErrAlreadyExists)
		}
		return fmt.Errorf("create container %s: %w", o.ID, err)
	}
	err = monitor.WriteConfig(dir, monitor.Config{
		ID:        o.ID,
		Bundle:    bundle,
		LogPath:   o.LogPath,
		LogDir:    o.LogDir,
		Tty:       o.Tty,
		Stdin:     o.Stdin,
		StdinOnce: o.StdinOnce,
		Runc:      h.Runc,
		RuncRoot:  h.Root,

		SystemdCgroup: r.cfg.CgroupDriver == cgroup.Systemd,
		MemoryCgroup:  memcg,
		Restore:       o.Restore,
	})
	if err == nil {
		r.byID.Store(o.ID, h)
		_, err = monitor.Launch(ctx, r.cfg.MonitorCmd, dir)
	}
	if err != nil {
		// A failed runc create cleans up after itself, but a launch cut
		// short by ctx may have left a created container.
		h.runc.Delete(context.WithoutCancel(ctx), o.ID, &runc.DeleteOpts{Force: true})
		os.RemoveAll(dir)
		r.byID.Delete(o.ID)
		if o.Restore != nil {
			// The restore's work directory goes with this call: the
			// error carries CRIU's own words.
			return fmt.Errorf("restore container %s: %w; CRIU says: %s", o.ID, err, criuErrors(filepath.Join(o.Restore.WorkPath, restoreLog), 5))
		}
		return fmt.Errorf("create container %s: %w", o.ID, err)
	}
	if o.Restore != nil {
		// Running already: Start must not run runc start, and finds this.
		if err := os.WriteFile(filepath.Join(dir, restoredFile), nil, 0o600); err != nil {
			return fmt.Errorf("create container %s: %w", o.ID, err)
		}
	}
	return nil
}

func isRestored(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, restoredFile))
	return err == nil
}

// Start runs the created container's process (`runc start`).
func (r *Runtime) Start(ctx context.Context, id string) error {
	r.forgetStatus(id)
	defer r.forgetStatus(id)
	dir, err := r.existing(id)
	if err != nil {
		return err
	}
	// Intent, then the act, then done: "starting" holds the start time
	// across a crash right after runc start, and becomes "started" only
	// once runc has started the process. A crash in between leaves
	// "starting", which Status resolves by asking runc. Start holds a
	// lock on the marker throughout, so a status read (kubelet polls
	// every second) can tell this start in flight, in this process or
	// another, from one a crash cut short, and never finishes the record
	// under it; the kernel drops the lock with a crashed daemon.
	starting := filepath.Join(dir, startingFile)
	mark, err := lockMarker(starting, true)
	if err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	defer mark.Close()
	if err := writeMarker(mark, time.Now()); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	// A restored container runs since Create (runc start would fail):
	// Start only marks it started, so the CRI states follow as usual.
	if !isRestored(dir) {
		if err := r.handlerOf(id).runc.Start(ctx, id); err != nil {
			os.Remove(starting)
			return fmt.Errorf("start container %s: %w", id, runcErr(err))
		}
		if r.afterRuncStart != nil {
			r.afterRuncStart(id)
		}
	}
	if err := os.Rename(starting, filepath.Join(dir, startedFile)); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// writeMarker replaces the marker's content with t, in place: the lock
// is on this inode, so the marker is never replaced by a new file.
func writeMarker(f *os.File, t time.Time) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", f.Name(), err)
	}
	if _, err := f.WriteAt([]byte(t.Format(time.RFC3339Nano)), 0); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return nil
}

// errMarkerHeld: a live Start holds the start marker.
var errMarkerHeld = errors.New("a start is in flight")

// lockMarker opens the start marker at path and locks it exclusively:
// waiting for the lock when create (Start: another holder is only a
// status read finishing a leftover record, or a concurrent Start), or
// failing with errMarkerHeld at once (a status read must not wait on a
// runc start). A marker renamed or removed while we waited for its lock
// is no longer the marker: create opens the new one; a reader gets
// os.ErrNotExist.
func lockMarker(path string, create bool) (*os.File, error) {
	for {
		flag, how := os.O_RDONLY, unix.LOCK_EX|unix.LOCK_NB
		if create {
			flag, how = os.O_RDWR|os.O_CREATE, unix.LOCK_EX
		}
		f, err := os.OpenFile(path, flag, 0o600)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), how); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, errMarkerHeld
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		var held, named unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &held); err != nil {
			f.Close()
			return nil, fmt.Errorf("stat %s: %w", path, err)
		}
		if err := unix.Stat(path, &named); err == nil && named.Ino == held.Ino && named.Dev == held.Dev {
			return f, nil
		} else if err != nil && !errors.Is(err, unix.ENOENT) {
			f.Close()
			return nil, fmt.Errorf("stat %s: %w", path, err)
		}
		f.Close()
		if !create {
			return nil, os.ErrNotExist
		}
	}
}

// stopKillWait bounds the wait for an exit after SIGKILL; only a process
// stuck in uninterruptible sleep takes longer.
const stopKillWait = 10 * time.Second

// Stop sends sig (SIGTERM when 0) and, if the container has not exited
// after timeout, SIGKILL to all its processes; it returns once the exit is
// recorded. A zero timeout kills at once (CRI StopContainer). An exited
// container is not an error.
func (r *Runtime) Stop(ctx context.Context, id string, sig syscall.Signal, timeout time.Duration) error {
	r.forgetStatus(id)
	defer r.forgetStatus(id)
	dir, err := r.existing(id)
	if err != nil {
		return err
	}
	if _, ok, _ := monitor.ReadExit(dir); ok {
		return nil
	}
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if timeout > 0 {
		err := r.kill(ctx, id, dir, sig, false)
		if err != nil && !errors.Is(err, ErrNotRunning) {
			return fmt.Errorf("stop container %s: %w", id, err)
		}
		if _, err := r.waitExit(ctx, id, dir, timeout); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("stop container %s: %w", id, ctx.Err())
		}
	}
	// --all: a container sharing the host pid namespace does not die with its init.
	if err := r.kill(ctx, id, dir, syscall.SIGKILL, true); err != nil && !errors.Is(err, ErrNotRunning) {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	if _, err := r.waitExit(ctx, id, dir, stopKillWait); err != nil {
		return fmt.Errorf("stop container %s: exit not recorded after SIGKILL: %w", id, err)
	}
	return nil
}

// Kill signals the container's init, or all its processes.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	r.forgetStatus(id)
	defer r.forgetStatus(id)
	dir, err := r.existing(id)
	if err != nil {
		return err
	}
	if err := r.kill(ctx, id, dir, sig, all); err != nil {
		return fmt.Errorf("kill container %s: %w", id, err)
	}
	return nil
}

// exitedErr: runc no longer knows a container released at its exit; to
// CRI the container still exists and is not running.
func exitedErr(dir string, err error) error {
	if errors.Is(err, ErrNotFound) {
		if _, ok, _ := monitor.ReadExit(dir); ok {
			return fmt.Errorf("%w (exited)", ErrNotRunning)
		}
	}
	return err
}

// kill signals the container through runc. Once the exit is recorded,
// Release may free runc's state (and the cgroup runc kill --all reads) at
// any moment: the two never run side by side, and a container whose exit
// is recorded is not running, whatever runc would say of it.
func (r *Runtime) kill(ctx context.Context, id, dir string, sig syscall.Signal, all bool) error {
	unlock := r.runcState.Lock(id)
	defer unlock()
	if _, ok, _ := monitor.ReadExit(dir); ok {
		return ErrNotRunning
	}
	var opts *runc.KillOpts
	if all {
		opts = &runc.KillOpts{All: true}
	}
	return runcErr(r.handlerOf(id).runc.Kill(ctx, id, int(sig), opts))
}

// Release frees what runc keeps of a container whose exit is recorded: its
// state and its cgroup (a systemd scope under that driver). The container
// stays as CRI sees it: Status answers from the monitor's exit record,
// and the state directory, logs and root filesystem wait for Delete. An
// exited container is never started again, so nothing needs runc's state
// after the exit, while kubelet may keep exited containers for a long
// time; releasing at exit, as containerd does, keeps a node from piling
// up dead cgroups and spares the removal a runc run. A container that has
// not exited is left alone.
func (r *Runtime) Release(ctx context.Context, id string) error {
	dir, err := r.existing(id)
	if err != nil {
		return err
	}
	if _, ok, _ := monitor.ReadExit(dir); !ok {
		return nil
	}
	unlock := r.runcState.Lock(id)
	defer unlock()
	h := r.handlerOf(id)
	if _, err := os.Lstat(filepath.Join(h.Root, id)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// No --force: runc refuses a container whose init is still there.
	if err := runcErr(h.runc.Delete(ctx, id, nil)); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("release container %s: %w", id, err)
	}
	return nil
}

// monitorExitWait bounds how long Delete lets a monitor finish on its own
// (it records the exit, flushes attach clients, then ends).
const monitorExitWait = 5 * time.Second

// Delete removes the container whatever its state: its processes, runc's
// state and cgroup, its monitor and state directory. Deleting a container
// that does not exist succeeds.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	r.forgetStatus(id)
	defer r.forgetStatus(id)
	dir, err := r.dir(id)
	if err != nil {
		return err
	}
	if !r.exists(id, dir) {
		// Nothing left (a removal repeated after a crash): no runc to run.
		r.forget(id)
		return nil
	}
	// A monitor may still be running runc create for a daemon that died
	// mid-Create: deleting now would race the create, which could then
	// leave a container nobody knows of. Its outcome comes quickly.
	waitCreateSettled(dir, createSettleWait)
	h := r.handlerOf(id)
	if _, recorded, _ := monitor.ReadExit(dir); !recorded && monitor.Alive(dir) {
		// runc delete --force polls a killed init in 100 ms steps; the
		// monitor reports the exit as soon as it happens.
		if h.runc.Kill(ctx, id, int(syscall.SIGKILL), &runc.KillOpts{All: true}) == nil {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			monitor.Wait(wctx, dir)
			cancel()
		}
	}
	// runc's state is gone when the container was released at its exit:
	// runc would only say so.
	unlock := r.runcState.Lock(id)
	if _, err := os.Lstat(filepath.Join(h.Root, id)); !errors.Is(err, os.ErrNotExist) {
		if err := runcErr(h.runc.Delete(ctx, id, &runc.DeleteOpts{Force: true})); err != nil && !errors.Is(err, ErrNotFound) {
			unlock()
			return fmt.Errorf("delete container %s: %w", id, err)
		}
	}
	unlock()
	r.forget(id)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if monitor.Alive(dir) {
		wctx, cancel := context.WithTimeout(ctx, monitorExitWait)
		monitor.Wait(wctx, dir)
		cancel()
		if !waitGone(dir, time.Second) {
			// It outlived its container (a stuck drain); do not leave it behind.
			if pid := monitor.Pid(dir); pid > 0 && monitor.Alive(dir) {
				syscall.Kill(pid, syscall.SIGKILL)
				waitGone(dir, time.Second)
			}
		}
	}
	if err := r.removeState(id, dir); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// removeState removes the container's state directory once its monitor is
// gone. Reads create nothing there, and holding the monitor's lock keeps a
// concurrent Stop or Status from recording a lost exit into it; but a
// runc exec started just before the removal (an exec probe) still creates
// its log file there, and removing a directory some other process is
// writing into fails with "directory not empty". Such a file comes once
// per exec, so a few more passes finish the job.
func (r *Runtime) removeState(id, dir string) error {
	unlock, err := monitor.Hold(dir)
	if err != nil {
		// A monitor that outlived its SIGKILL: remove what can be removed.
		slog.Warn("removing the state of a container whose monitor is still there", "container", id, "error", err)
		unlock = func() {}
	}
	defer unlock()
	removeAll := os.RemoveAll
	if r.removeAll != nil {
		removeAll = r.removeAll
	}
	for attempt := 1; ; attempt++ {
		err := removeAll(dir)
		if err == nil || !errors.Is(err, syscall.ENOTEMPTY) || attempt == 5 {
			return err
		}
		slog.Debug("state directory refilled during its removal; removing again", "container", id, "error", err)
	}
}

// createSettleWait bounds how long Delete waits for an interrupted
// runc create to finish one way or the other.
const createSettleWait = 10 * time.Second

// waitCreateSettled waits while a live monitor has neither an init pid nor
// an exit record, i.e. is still inside runc create.
func waitCreateSettled(dir string, d time.Duration) {
	deadline := time.Now().Add(d)
	for delay := time.Millisecond; monitor.InitPid(dir) == 0 && monitor.Alive(dir); delay = min(2*delay, 50*time.Millisecond) {
		if _, ok, _ := monitor.ReadExit(dir); ok || time.Now().After(deadline) {
			return
		}
		time.Sleep(delay)
	}
}

func waitGone(dir string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for delay := time.Millisecond; monitor.Alive(dir); delay = min(2*delay, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay)
	}
	return true
}
