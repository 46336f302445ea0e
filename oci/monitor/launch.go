package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Launch starts the monitor for the container whose Config is already in
// dir, with argv as the command prefix (the state directory is appended),
// and returns once runc create has finished: on success the container is
// "created" and its init's pid is returned; on failure the error carries
// runc's message and nothing is left running.
//
// The monitor gets its own session and its stdio goes to a file in dir, so
// neither a signal to the daemon's process group nor the daemon's death
// reaches it.
func Launch(ctx context.Context, argv []string, dir string) (initPid int, err error) {
	if len(argv) == 0 {
		return 0, errors.New("launch monitor: empty command")
	}
	diag, err := os.OpenFile(filepath.Join(dir, diagFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("launch monitor: %w", err)
	}
	defer diag.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, fmt.Errorf("launch monitor: %w", err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("launch monitor: %w", err)
	}
	defer r.Close()

	cmd := exec.Command(argv[0], append(argv[1:len(argv):len(argv)], dir)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, diag, diag
	cmd.ExtraFiles = []*os.File{w} // fd 3 = readyFd
	cmd.Env = withoutNotifySocket(os.Environ())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("launch monitor: %w", err)
	}

	type result struct {
		msg readyMsg
		err error
	}
	got := make(chan result, 1)
	go func() {
		var res result
		res.err = json.NewDecoder(r).Decode(&res.msg)
		got <- res
	}()
	var res result
	select {
	case res = <-got:
	case <-ctx.Done():
		cmd.Process.Kill()
		cmd.Wait()
		return 0, ctx.Err()
	}
	if res.err != nil {
		cmd.Wait()
		return 0, fmt.Errorf("monitor ended without reporting (%v): %s", res.err, lastLine(filepath.Join(dir, diagFile)))
	}
	if res.msg.Error != "" {
		cmd.Wait()
		return 0, errors.New(res.msg.Error)
	}
	// From here on the monitor lives on its own; this process only has to
	// reap it if it ends while we are still its parent.
	reapLater(cmd.Process.Pid)
	cmd.Process.Release()
	return res.msg.Pid, nil
}

func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// Monitors outlive the calls that start them, so nobody waits for them; one
// SIGCHLD-driven sweep reaps those that end while the daemon is their
// parent. It waits for those pids only, never -1, so it cannot steal the
// status of any other child of the daemon (runc invocations, CNI plugins).
var monitors struct {
	once sync.Once
	mu   sync.Mutex
	pids map[int]struct{}
}

func reapLater(pid int) {
	monitors.once.Do(func() {
		monitors.pids = map[int]struct{}{}
		c := make(chan os.Signal, 1)
		signal.Notify(c, unix.SIGCHLD)
		go func() {
			for range c {
				sweepMonitors()
			}
		}()
	})
	monitors.mu.Lock()
	monitors.pids[pid] = struct{}{}
	monitors.mu.Unlock()
	sweepMonitors() // it may have ended before the handler was in place
}

func sweepMonitors() {
	monitors.mu.Lock()
	defer monitors.mu.Unlock()
	for pid := range monitors.pids {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if got == pid || errors.Is(err, unix.ECHILD) {
			delete(monitors.pids, pid)
		}
	}
}
