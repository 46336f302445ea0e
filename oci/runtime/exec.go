package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/console"
	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

const (
	// maxExecOutput caps what ExecSync keeps of each stream, as containerd
	// does; the rest is read and dropped so the process never blocks on it.
	maxExecOutput = 16 << 20
	// execDrain bounds output collection after the exec'd process ended: a
	// background child it left behind may hold the pipes open for ever.
	execDrain = 2 * time.Second
	// runcExitGrace is how long runc gets to return after its process was
	// killed before runc itself is killed.
	runcExitGrace = 5 * time.Second
)

// ExecSync runs cmd in the container and returns its output and exit code.
// With a timeout (0 = none), the process is killed when it fires and the
// error wraps ErrTimeout and context.DeadlineExceeded; the output read so
// far is returned with it.
func (r *Runtime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error) {
	var out, errOut cappedBuffer
	code, err := r.exec(ctx, id, execRequest{args: cmd, stdout: &out, stderr: &errOut, timeout: timeout})
	return out.Bytes(), errOut.Bytes(), int32(code), err
}

// Exec runs cmd in the container with streams from kubelet's streaming
// server. A non-zero exit is returned as utilexec.CodeExitError, unwrapped:
// cri-streaming type-asserts utilexec.ExitError to report the exit code, so
// the CRI server must pass this error through as is.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	req := execRequest{args: cmd, tty: tty, stdin: in, resize: resize}
	if out != nil {
		req.stdout = out
	}
	if errw != nil {
		req.stderr = errw
	}
	code, err := r.exec(ctx, id, req)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

type execRequest struct {
	args           []string
	tty            bool
	stdin          io.Reader
	stdout, stderr io.Writer
	resize         <-chan remotecommand.TerminalSize
	timeout        time.Duration
}

// exec runs one process in the container with a foreground `runc exec`:
// runc stays its parent, so runc's exit status is the process's, and
// nothing has to adopt it. For a terminal, runc is handed a pty of ours as
// its own controlling terminal; runc copies between that and the
// container's pty and follows our resizes (SIGWINCH).
func (r *Runtime) exec(ctx context.Context, id string, req execRequest) (int, error) {
	if len(req.args) == 0 {
		return -1, fmt.Errorf("exec in container %s: empty command: %w", id, ErrInvalidArgument)
	}
	dir, err := r.existing(id)
	if err != nil {
		return -1, err
	}
	tpl, err := r.processTemplate(id, dir)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	p := *tpl
	p.Args = req.args
	p.Terminal = req.tty
	p.ConsoleSize = nil
	p.Env = append([]string(nil), tpl.Env...)
	if req.tty && !hasEnv(p.Env, "TERM") {
		// Terminal programs (vi, top, less) need a TERM; kubectl sends none.
		p.Env = append(p.Env, "TERM=xterm")
	}

	tag := randomTag()
	pidFile := filepath.Join(dir, "exec-"+tag+".pid")
	logFile := filepath.Join(dir, "exec-"+tag+".log")
	defer os.Remove(pidFile)
	defer os.Remove(logFile)

	sio, err := newExecIO(req)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	defer sio.Close()
	if sio.size != nil && sio.size.Width > 0 && sio.size.Height > 0 {
		// runc sets the container's console to this size before the
		// process runs; copying it from our pty later races a program
		// that reads its size at once (stty size, a shell's first prompt).
		p.ConsoleSize = &specs.Box{Height: uint(sio.size.Height), Width: uint(sio.size.Width)}
	}
	copied := sio.copy(req)

	// runc must outlive ctx: killing runc would orphan the process, not end it.
	runcCtx, killRunc := context.WithCancel(context.WithoutCancel(ctx))
	defer killRunc()
	done := make(chan error, 1)
	go func() {
		done <- r.handlerOf(id).runc.Exec(runcCtx, id, p, &runc.ExecOpts{IO: sio, PidFile: pidFile, LogFile: logFile})
	}()

	var timer <-chan time.Time
	if req.timeout > 0 {
		t := time.NewTimer(req.timeout)
		defer t.Stop()
		timer = t.C
	}
	var runErr error
	var interrupted error
	select {
	case runErr = <-done:
	case <-timer:
		interrupted = fmt.Errorf("%w after %s: %w", ErrTimeout, req.timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		interrupted = ctx.Err()
	}
	if interrupted != nil {
		killExec(pidFile, done, killRunc)
	}

	select {
	case <-copied:
	case <-time.After(execDrain):
		sio.closeReaders()
		<-copied
	}

	if interrupted != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, interrupted)
	}
	if runErr == nil {
		return 0, nil
	}
	var ee *runc.ExitError
	if errors.As(runErr, &ee) {
		// runc writes the pid file once the process exists; without it the
		// status is runc's own failure (no such binary, stopped container).
		if _, err := os.Stat(pidFile); err == nil {
			return ee.Status, nil
		}
		if b, err := os.ReadFile(logFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			runErr = runcErr(errors.New(string(b)))
		}
	}
	return -1, fmt.Errorf("exec in container %s: %w", id, exitedErr(dir, runErr))
}

// killExec kills the exec'd process (its pid is in pidFile once runc has
// started it) and waits for runc to return; runc itself is killed if it
// does not return soon after, or never started the process.
func killExec(pidFile string, done <-chan error, killRunc func()) {
	deadline := time.After(runcExitGrace)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for killed := false; ; {
		if !killed {
			// Still runc's unreaped child until done fires, so the pid
			// cannot have been reused.
			if pid := readPid(pidFile); pid > 0 {
				unix.Kill(pid, unix.SIGKILL)
				killed = true
				poll.Stop()
			}
		}
		select {
		case <-done:
			return
		case <-deadline:
			killRunc()
			<-done
			return
		case <-poll.C:
		}
	}
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// execIO is the exec'd process's stdio: pipes, or a pty for a terminal. It
// implements go-runc's IO so runc is started with the child ends (and, for
// a terminal, with the pty as its controlling terminal).
type execIO struct {
	tty                         bool
	stdinW                      *os.File // our end of stdin (pipe), nil without stdin
	stdoutR, stderrR            *os.File // our ends of the output pipes
	master                      *os.File // pty master (tty)
	childIn, childOut, childErr *os.File
	// size is the terminal size the client asked for first, if any.
	size      *remotecommand.TerminalSize
	closeOnce sync.Once
}

func newExecIO(req execRequest) (_ *execIO, err error) {
	e := &execIO{tty: req.tty}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if req.tty {
		master, slave, err := openPty()
		if err != nil {
			return nil, err
		}
		e.master = master
		e.childIn, e.childOut, e.childErr = slave, slave, slave
		// The size runc copies to the container's terminal at start.
		select {
		case ws, ok := <-req.resize:
			if ok {
				resizePty(master, ws)
				e.size = &ws
			}
		default:
		}
		return e, nil
	}
	if req.stdin != nil {
		if e.childIn, e.stdinW, err = os.Pipe(); err != nil {
			return nil, err
		}
	}
	if e.stdoutR, e.childOut, err = os.Pipe(); err != nil {
		return nil, err
	}
	if e.stderrR, e.childErr, err = os.Pipe(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *execIO) Set(cmd *exec.Cmd) {
	// Only non-nil files: a typed nil would make exec.Cmd dereference it.
	if e.childIn != nil {
		cmd.Stdin = e.childIn
	}
	cmd.Stdout = e.childOut
	cmd.Stderr = e.childErr
	if e.tty {
		cmd.SysProcAttr.Setsid = true
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
	}
}

// CloseAfterStart drops our copies of the child ends, so the output ends
// (EOF, or EIO on the master) once runc and the process are done.
func (e *execIO) CloseAfterStart() error {
	for _, f := range []*os.File{e.childIn, e.childOut, e.childErr} {
		if f != nil {
			f.Close()
		}
	}
	return nil
}

func (e *execIO) closeReaders() {
	for _, f := range []*os.File{e.stdoutR, e.stderrR, e.master} {
		if f != nil {
			f.Close()
		}
	}
}

func (e *execIO) Close() error {
	e.closeOnce.Do(func() {
		e.CloseAfterStart()
		e.closeReaders()
		if e.stdinW != nil {
			e.stdinW.Close()
		}
	})
	return nil
}

func (e *execIO) Stdin() io.WriteCloser { return nil }
func (e *execIO) Stdout() io.ReadCloser { return nil }
func (e *execIO) Stderr() io.ReadCloser { return nil }

// copy starts moving data between the request's streams and the process;
// the returned channel closes when all output has been delivered.
func (e *execIO) copy(req execRequest) <-chan struct{} {
	var wg sync.WaitGroup
	output := func(w io.Writer, r *os.File) {
		if w == nil {
			w = io.Discard
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(w, r)
		}()
	}
	done := make(chan struct{})
	if e.tty {
		output(req.stdout, e.master)
		if req.stdin != nil {
			go io.Copy(e.master, req.stdin)
		}
		if req.resize != nil {
			go func() {
				for {
					select {
					case ws, ok := <-req.resize:
						if !ok {
							return
						}
						resizePty(e.master, ws)
					case <-done:
						return
					}
				}
			}()
		}
	} else {
		output(req.stdout, e.stdoutR)
		output(req.stderr, e.stderrR)
		if req.stdin != nil {
			go func() {
				io.Copy(e.stdinW, req.stdin)
				e.stdinW.Close()
			}()
		}
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// openPty allocates a pty whose master is non-blocking (so Close interrupts
// a read) and whose slave is raw: runc sets it raw too, but only after
// starting, and bytes must not be cooked before that.
func openPty() (master, slave *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	c, err := console.ConsoleFromFile(slave)
	if err == nil {
		err = c.SetRaw()
	}
	if err != nil {
		master.Close()
		slave.Close()
		return nil, nil, fmt.Errorf("raw pty: %w", err)
	}
	return master, slave, nil
}

func resizePty(master *os.File, ws remotecommand.TerminalSize) {
	rc, err := master.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Height, Col: ws.Width})
	})
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

func randomTag() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// cappedBuffer keeps the first maxExecOutput bytes written to it and
// accepts (drops) the rest.
type cappedBuffer struct{ bytes.Buffer }

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxExecOutput - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
