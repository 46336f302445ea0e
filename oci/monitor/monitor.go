package monitor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// readyFd is where Launch listens for the outcome of runc create.
const readyFd = 3

// drainTimeout bounds how long output is still collected after the init has
// exited. With its own pid namespace every process of the container dies with
// the init and the pipes close at once; a container in the host's pid
// namespace can leave processes holding them open forever.
const drainTimeout = 2 * time.Second

type readyMsg struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// Main runs the monitor of the container whose state directory is args[0]
// and returns the process exit code. crivet's main calls it for the hidden
// subcommand `crivet monitor <dir>`; Launch starts that command.
func Main(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: crivet monitor <state-dir>")
		return 2
	}
	var ready *os.File
	if _, err := unix.FcntlInt(readyFd, unix.F_GETFD, 0); err == nil {
		// Inherited without close-on-exec; runc and the container must not get it.
		unix.CloseOnExec(readyFd)
		ready = os.NewFile(readyFd, "ready")
	}
	m, err := start(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s monitor: %v\n", time.Now().Format(time.RFC3339Nano), err)
		tell(ready, readyMsg{Error: err.Error()})
		return 1
	}
	tell(ready, readyMsg{Pid: m.initPid})
	m.run()
	return 0
}

func tell(f *os.File, msg readyMsg) {
	if f == nil {
		return
	}
	json.NewEncoder(f).Encode(msg)
	f.Close()
}

type monitor struct {
	dir     string
	cfg     Config
	lock    *os.File // flock held until the process exits; see Alive
	log     *logFile
	sigchld chan os.Signal
	ln      *net.UnixListener

	initPid int
	memcg   string    // the container's memory cgroup directory, for OOM accounting
	oomBase int64     // oom_kill count of memcg when the container was created
	oom     *oomWatch // follows memcg's count on cgroup v2; nil elsewhere

	// Container stdio as the monitor holds it: a pipe per stream, or the pty
	// master (out, and stdin when Stdin) for a tty container.
	out, errOut *os.File
	stdinMu     sync.Mutex
	stdin       *os.File // nil when the container has no stdin, or it was closed
	stdinClosed bool

	mu      sync.Mutex
	clients map[*client]struct{}
	exited  chan struct{} // closed once exit is recorded
	exit    Exit
}

func start(dir string) (*monitor, error) {
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock %s: another monitor runs for this container: %w", dir, err)
	}
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	m := &monitor{
		dir:     dir,
		cfg:     cfg,
		lock:    lock,
		sigchld: make(chan os.Signal, 1),
		clients: map[*client]struct{}{},
		exited:  make(chan struct{}),
	}
	if err := writeFileAtomic(dir, pidFile, []byte(strconv.Itoa(os.Getpid())), false); err != nil {
		return nil, err
	}
	// runc create exits once the container is created; its init must become
	// our child so that we, not pid 1, collect its exit status.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	signal.Notify(m.sigchld, unix.SIGCHLD)
	// The monitor must live as long as its container, and `killall crivet`
	// or a stray hangup aimed at the daemon would reach it too (the command
	// name is the same). Caught, not ignored: an ignored disposition
	// survives exec, into runc and whatever runc starts.
	stray := make(chan os.Signal, 1)
	signal.Notify(stray, unix.SIGHUP, unix.SIGINT, unix.SIGTERM)
	go func() {
		for s := range stray {
			m.diagf("ignoring %v: only SIGKILL ends a monitor before its container", s)
		}
	}()
	if m.log, err = openLog(cfg.LogDir, cfg.LogPath, m.diagf); err != nil {
		return nil, err
	}
	if err := m.listen(); err != nil {
		return nil, err
	}
	if err := m.create(); err != nil {
		m.ln.Close()
		os.Remove(filepath.Join(dir, socketName))
		return nil, err
	}
	return m, nil
}

func (m *monitor) diagf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s monitor %s: %s\n", time.Now().Format(time.RFC3339Nano), m.cfg.ID, fmt.Sprintf(format, args...))
}

// create runs `runc create` with the container's stdio in our hands.
func (m *monitor) create() error {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	verb := []string{"create"}
	if r := m.cfg.Restore; r != nil {
		// CRIU brings the checkpointed process tree back; runc matches
		// its stdio pipes, recorded at the dump, to runc's own stdio
		// (ours, below), so the monitor reads it as a created one's.
		verb = []string{"restore", "--detach", "--image-path", r.ImagePath, "--work-path", r.WorkPath}
	}
	cmd := exec.Command(m.cfg.Runc, append(append(m.cfg.runcArgs(),
		"--log", filepath.Join(m.dir, runcLogFile), "--log-format", "json"), append(verb,
		"--bundle", m.cfg.Bundle, "--pid-file", filepath.Join(m.dir, initPidFile))...)...)
	cmd.Env = withoutNotifySocket(os.Environ())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null

	var childEnds []*os.File
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
	}()
	var console *runc.Socket
	type master struct {
		f   *os.File
		err error
	}
	masterc := make(chan master, 1)
	if m.cfg.Tty {
		if console, err = runc.NewTempConsoleSocket(); err != nil {
			return fmt.Errorf("console socket: %w", err)
		}
		defer console.Close()
		cmd.Args = append(cmd.Args, "--console-socket", console.Path())
		go func() {
			f, err := receiveMaster(console)
			masterc <- master{f, err}
		}()
	} else {
		// runc hands its own stdio to the container's init.
		var outW, errW, inR *os.File
		if m.out, outW, err = os.Pipe(); err != nil {
			return err
		}
		childEnds = append(childEnds, outW)
		if m.errOut, errW, err = os.Pipe(); err != nil {
			return err
		}
		childEnds = append(childEnds, errW)
		cmd.Stdout, cmd.Stderr = outW, errW
		if m.cfg.Stdin {
			if inR, m.stdin, err = os.Pipe(); err != nil {
				return err
			}
			childEnds = append(childEnds, inR)
			cmd.Stdin = inR
		}
	}
	cmd.Args = append(cmd.Args, m.cfg.ID)

	if err := cmd.Run(); err != nil {
		if msg := lastRuncError(filepath.Join(m.dir, runcLogFile)); msg != "" {
			return fmt.Errorf("runc %s: %s", verb[0], msg)
		}
		return fmt.Errorf("runc %s: %w", verb[0], err)
	}
	m.initPid = InitPid(m.dir)
	if m.initPid == 0 {
		m.destroy()
		return fmt.Errorf("runc create: no pid in %s", filepath.Join(m.dir, initPidFile))
	}
	if m.cfg.Tty {
		var got master
		select {
		case got = <-masterc:
		case <-time.After(5 * time.Second):
			got.err = errors.New("runc sent no console")
		}
		if got.err != nil {
			m.destroy()
			return fmt.Errorf("receive the container's console: %w", got.err)
		}
		m.out = got.f
		if m.cfg.Stdin {
			m.stdin = got.f
		}
	}
	m.memcg = m.cfg.MemoryCgroup
	if m.oomBase, err = oomKills(m.memcg); err != nil {
		m.diagf("OOM kills will not be detected: %v", err)
	} else if _, err := os.Stat(filepath.Join(m.memcg, "memory.events")); err == nil { // v2
		if m.oom, err = watchOOM(m.memcg, m.oomBase); err != nil {
			m.diagf("OOM kills are read only at exit: %v", err)
		}
	}
	return nil
}

// destroy removes a container that was created but cannot be monitored, so
// a failed Create leaves nothing running.
func (m *monitor) destroy() {
	exec.Command(m.cfg.Runc, append(m.cfg.runcArgs(), "delete", "--force", m.cfg.ID)...).Run()
}

// receiveMaster takes the pty master runc sends over the console socket and
// makes it non-blocking, so reads can be interrupted by Close.
func receiveMaster(s *runc.Socket) (*os.File, error) {
	con, err := s.ReceiveMaster()
	if err != nil {
		return nil, err
	}
	defer con.Close()
	fd, err := unix.FcntlInt(con.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "pty-master"), nil
}

// lastRuncError digs the error runc reported out of its json log.
func lastRuncError(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		var e struct{ Level, Msg string }
		if json.Unmarshal(lines[i], &e) == nil && e.Level == "error" {
			return e.Msg
		}
	}
	return ""
}

func withoutNotifySocket(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		// runc treats NOTIFY_SOCKET as "I run under systemd"; it is the
		// daemon's, never the container's.
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			out = append(out, kv)
		}
	}
	return out
}

// run copies output, reaps the init, records its exit and returns.
func (m *monitor) run() {
	go m.serve()
	var pumps sync.WaitGroup
	pump := func(f *os.File, stream string, kind byte) {
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			m.pump(f, stream, kind)
		}()
	}
	pump(m.out, "stdout", frameStdout)
	if m.errOut != nil {
		pump(m.errOut, "stderr", frameStderr)
	}

	exit := m.waitInit()

	drained := make(chan struct{})
	go func() { pumps.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		m.out.Close()
		if m.errOut != nil {
			m.errOut.Close()
		}
		<-drained
	}

	if n, err := m.oom.kills(m.memcg); err == nil && n > m.oomBase {
		exit.Reason = ReasonOOMKilled
	}
	if err := writeExit(m.dir, exit); err != nil {
		m.diagf("record exit: %v", err)
	}
	m.finish(exit)
	m.log.close()
}

// pump reads one output stream of the container until it ends; a pty master
// ends with EIO once the last process holding the terminal is gone.
func (m *monitor) pump(f *os.File, stream string, kind byte) {
	lines := newLineSplitter(stream, m.log)
	buf := make([]byte, ioChunk)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			lines.Write(buf[:n])
			m.broadcast(kind, buf[:n])
		}
		if err != nil {
			break
		}
	}
	lines.flush()
}

// waitInit reaps children until the container's init is among them. Being a
// subreaper, the monitor also inherits orphans from a container that shares
// the host pid namespace; they are reaped and otherwise ignored.
func (m *monitor) waitInit() Exit {
	// A lost SIGCHLD cannot happen (it stays pending), but a periodic look
	// costs nothing and covers an init that somehow is not our child.
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if pid == m.initPid {
				return exitFrom(ws, time.Now())
			}
			if errors.Is(err, unix.ECHILD) && unix.Kill(m.initPid, 0) == unix.ESRCH {
				m.diagf("init %d is gone but was not our child; its exit status is lost", m.initPid)
				return Exit{Code: 255, FinishedAt: time.Now(), Reason: ReasonError, Message: "exit status lost: the init was not the monitor's child"}
			}
			if pid <= 0 || err != nil {
				break
			}
		}
		select {
		case <-m.sigchld:
		case <-tick.C:
		}
	}
}

func exitFrom(ws unix.WaitStatus, at time.Time) Exit {
	e := Exit{FinishedAt: at}
	switch {
	case ws.Exited():
		e.Code = int32(ws.ExitStatus())
	case ws.Signaled():
		e.Signal = int(ws.Signal())
		e.Code = 128 + int32(e.Signal)
	}
	e.Reason = ReasonError
	if e.Code == 0 {
		e.Reason = ReasonCompleted
	}
	return e
}
