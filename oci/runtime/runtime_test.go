package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/monitor"
	"github.com/crivet/crivet/test/fixtures"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

func TestCreateLeavesContainerCreatedAndStartRunsIt(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := create(t, rt, e, []string{"sh", "-c", "echo started; sleep 100"}, CreateOptions{}, bundleOpts{})

	st, err := rt.Status(t.Context(), c.id)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateCreated || !alive(st.Pid) || !st.StartedAt.IsZero() {
		t.Fatalf("after Create: %+v, want created with a live init and no start time", st)
	}
	if recs := readLog(t, c.log); len(recs) != 0 {
		t.Fatalf("a created container must not have run its process yet: %v", recs)
	}

	if err := rt.Start(t.Context(), c.id); err != nil {
		t.Fatal(err)
	}
	st2, err := rt.Status(t.Context(), c.id)
	if err != nil {
		t.Fatal(err)
	}
	if st2.State != StateRunning || st2.Pid != st.Pid || st2.StartedAt.IsZero() {
		t.Fatalf("after Start: %+v, want running with the same init (%d) and a start time", st2, st.Pid)
	}
	eventually(t, 5*time.Second, "the process's output in the log", func() bool {
		return logText(t, c.log) == "started\n"
	})
	pids, err := rt.Pids(t.Context(), c.id)
	if err != nil || !slices.Contains(pids, st.Pid) {
		t.Fatalf("Pids = %v, %v; want the init %d among them", pids, err, st.Pid)
	}
}

func TestLogsAreCRIRecordsWithFullAndPartialLines(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	// 20000 bytes on one line: more than the 16 KiB a record carries.
	script := `echo out1; echo err1 >&2; head -c 20000 /dev/zero | tr '\0' x; echo; printf tail`
	c := run(t, rt, e, []string{"sh", "-c", script}, CreateOptions{}, bundleOpts{})
	st := waitExited(t, rt, c.id)
	if st.ExitCode != 0 || st.Reason != monitor.ReasonCompleted {
		t.Errorf("status %+v, want exit 0, Completed", st)
	}

	var stdout, stderr []logRecord
	for _, r := range readLog(t, c.log) {
		if r.stream == "stdout" {
			stdout = append(stdout, r)
		} else {
			stderr = append(stderr, r)
		}
	}
	x := strings.Repeat("x", 16384)
	want := []struct{ tag, content string }{{"F", "out1"}, {"P", x}, {"F", strings.Repeat("x", 20000-16384)}, {"P", "tail"}}
	if len(stdout) != len(want) {
		t.Fatalf("stdout records: got %d, want %d", len(stdout), len(want))
	}
	for i, w := range want {
		if stdout[i].tag != w.tag || stdout[i].content != w.content {
			t.Errorf("stdout record %d: %s with %d bytes, want %s with %d bytes", i, stdout[i].tag, len(stdout[i].content), w.tag, len(w.content))
		}
	}
	if len(stderr) != 1 || stderr[0].tag != "F" || stderr[0].content != "err1" {
		t.Errorf("stderr records: %+v, want one F err1", stderr)
	}
}

func TestExitCodeAndTimesAreRecorded(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := run(t, rt, e, []string{"sh", "-c", "exit 3"}, CreateOptions{}, bundleOpts{})
	st := waitExited(t, rt, c.id)
	if st.ExitCode != 3 || st.Reason != monitor.ReasonError || st.Pid != 0 {
		t.Errorf("status %+v, want exit 3, reason Error, no pid", st)
	}
	if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
		t.Errorf("started %v, finished %v", st.StartedAt, st.FinishedAt)
	}
}

func TestKilledInitReports128PlusSignal(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	if err := rt.Kill(t.Context(), c.id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if st := waitExited(t, rt, c.id); st.ExitCode != 137 {
		t.Errorf("status %+v, want exit code 137", st)
	}
}

func TestExecSyncReturnsOutputAndExitCode(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})

	out, errOut, code, err := rt.ExecSync(t.Context(), c.id, []string{"sh", "-c", "echo out; echo err >&2; exit 5"}, 0)
	if err != nil || string(out) != "out\n" || string(errOut) != "err\n" || code != 5 {
		t.Errorf("ExecSync = %q, %q, %d, %v; want out, err, 5", out, errOut, code, err)
	}
	_, _, _, err = rt.ExecSync(t.Context(), c.id, []string{"no-such-binary"}, 0)
	if err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("ExecSync of a missing binary: %v, want runc's error", err)
	}
}

func TestExecSyncTimeoutKillsTheProcess(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	before, err := rt.Pids(t.Context(), c.id)
	if err != nil {
		t.Fatal(err)
	}

	begin := time.Now()
	out, _, _, err := rt.ExecSync(t.Context(), c.id, []string{"sh", "-c", "echo $$ > /tmp/pid; echo begun; exec sleep 100"}, 500*time.Millisecond)
	took := time.Since(begin)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ExecSync past its timeout: %v, want ErrTimeout and DeadlineExceeded", err)
	}
	if took < 500*time.Millisecond || took > 3*time.Second {
		t.Errorf("ExecSync returned after %s for a 500ms timeout", took)
	}
	if string(out) != "begun\n" {
		t.Errorf("output before the timeout: %q", out)
	}
	after, err := rt.Pids(t.Context(), c.id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, after) {
		t.Errorf("pids before %v, after the timeout %v: the exec'd process survived", before, after)
	}
	if _, _, code, err := rt.ExecSync(t.Context(), c.id, []string{"sh", "-c", "kill -0 $(cat /tmp/pid)"}, 0); err != nil || code == 0 {
		t.Errorf("the timed-out process still exists in the container (code %d, %v)", code, err)
	}
}

func TestExecWithoutTtyStreamsAndReportsExitCodeTheWayCRIStreamingReadsIt(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})

	var out, errOut fixtures.Buffer
	err := rt.Exec(t.Context(), c.id, []string{"sh", "-c", "cat; echo e >&2"}, strings.NewReader("hello\n"), &out, &errOut, false, nil)
	if err != nil || out.String() != "hello\n" || errOut.String() != "e\n" {
		t.Errorf("Exec = %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}

	err = rt.Exec(t.Context(), c.id, []string{"sh", "-c", "exit 7"}, nil, &out, &errOut, false, nil)
	// cri-streaming's ServeExec does exactly this type assertion.
	if ee, ok := err.(utilexec.ExitError); !ok || !ee.Exited() || ee.ExitStatus() != 7 {
		t.Errorf("Exec of exit 7: %#v, want a utilexec.ExitError with status 7", err)
	}
}

func TestExecWithTtyRunsOnARealTerminal(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})

	resize := make(chan remotecommand.TerminalSize, 1)
	resize <- remotecommand.TerminalSize{Width: 100, Height: 40}
	var out fixtures.Buffer
	err := rt.Exec(t.Context(), c.id, []string{"sh", "-c", "tty; stty size; read l; echo got:$l"}, strings.NewReader("abc\n"), &out, nil, true, resize)
	if err != nil {
		t.Fatalf("Exec: %v (output %q)", err, out.String())
	}
	for _, want := range []string{"/dev/pts/", "40 100", "got:abc"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tty output %q lacks %q", out.String(), want)
		}
	}

	err = rt.Exec(t.Context(), c.id, []string{"sh", "-c", "exit 4"}, nil, &out, nil, true, nil)
	if ee, ok := err.(utilexec.ExitError); !ok || ee.ExitStatus() != 4 {
		t.Errorf("tty Exec of exit 4: %#v", err)
	}
}

type attachment struct {
	stdin       *io.PipeWriter
	out, errOut fixtures.Buffer
	cancel      context.CancelFunc
	done        chan error
}

func attach(t *testing.T, rt *Runtime, id string, tty bool, resize chan remotecommand.TerminalSize) *attachment {
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	a := &attachment{stdin: pw, cancel: cancel, done: make(chan error, 1)}
	var errw io.WriteCloser = &a.errOut
	if tty {
		errw = nil
	}
	go func() { a.done <- rt.Attach(ctx, id, pr, &a.out, errw, tty, resize) }()
	t.Cleanup(cancel)
	return a
}

func TestAttachReceivesOutputFromNowOnAndDeliversStdin(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	script := `echo before; while read l; do echo got:$l; echo err:$l >&2; done; echo eof`
	c := run(t, rt, e, []string{"sh", "-c", script}, CreateOptions{Stdin: true}, bundleOpts{})
	eventually(t, 5*time.Second, "the first line", func() bool { return logText(t, c.log) == "before\n" })

	a := attach(t, rt, c.id, false, nil)
	io.WriteString(a.stdin, "one\n")
	eventually(t, 5*time.Second, "the echo of stdin", func() bool {
		return a.out.String() == "got:one\n" && a.errOut.String() == "err:one\n"
	})
	a.cancel()
	if err := <-a.done; !errors.Is(err, context.Canceled) {
		t.Errorf("Attach after cancel: %v", err)
	}

	// Without StdinOnce, stdin outlives an attach session.
	b := attach(t, rt, c.id, false, nil)
	io.WriteString(b.stdin, "two\n")
	eventually(t, 5*time.Second, "the second session's echo", func() bool { return b.out.String() == "got:two\n" })
	// The client's stdin ending ends the session (kubectl attach -i with
	// piped input returns), not the container's stdin.
	b.stdin.Close()
	select {
	case err := <-b.done:
		if err != nil {
			t.Errorf("Attach after the client's stdin ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Attach did not return when the client's stdin ended")
	}
	time.Sleep(200 * time.Millisecond)
	if st, _ := rt.Status(t.Context(), c.id); st.State != StateRunning {
		t.Errorf("ending a session closed stdin without StdinOnce: %+v", st)
	}
	d := attach(t, rt, c.id, false, nil)
	io.WriteString(d.stdin, "three\n")
	eventually(t, 5*time.Second, "a third session's echo", func() bool { return d.out.String() == "got:three\n" })
}

func TestStdinOnceClosesStdinWhenTheFirstAttachEnds(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	script := `while read l; do echo got:$l; done; echo eof; exit 9`
	c := run(t, rt, e, []string{"sh", "-c", script}, CreateOptions{Stdin: true, StdinOnce: true}, bundleOpts{})

	a := attach(t, rt, c.id, false, nil)
	io.WriteString(a.stdin, "x\n")
	eventually(t, 5*time.Second, "the echo", func() bool { return a.out.String() == "got:x\n" })
	a.stdin.Close()
	select {
	case err := <-a.done:
		if err != nil {
			t.Fatalf("Attach: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Attach did not return when the container exited")
	}
	if a.out.String() != "got:x\neof\n" {
		t.Errorf("attach output %q", a.out.String())
	}
	if st := waitExited(t, rt, c.id); st.ExitCode != 9 {
		t.Errorf("status %+v, want exit 9", st)
	}
}

func TestAttachToTtyContainerTypesAndResizes(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	script := `read l; stty size; echo got:$l; sleep 100`
	c := run(t, rt, e, []string{"sh", "-c", script}, CreateOptions{Stdin: true}, bundleOpts{tty: true})

	resize := make(chan remotecommand.TerminalSize, 1)
	a := attach(t, rt, c.id, true, resize)
	resize <- remotecommand.TerminalSize{Width: 120, Height: 50}
	time.Sleep(200 * time.Millisecond)
	io.WriteString(a.stdin, "hi\n")
	eventually(t, 5*time.Second, "the terminal's answer", func() bool {
		s := a.out.String()
		return strings.Contains(s, "50 120") && strings.Contains(s, "got:hi")
	})
	if !strings.Contains(logText(t, c.log), "got:hi") {
		t.Errorf("tty output missing from the log: %q", logText(t, c.log))
	}
}

func TestReopenLogAfterRotationLosesNoLine(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	script := `i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done`
	c := run(t, rt, e, []string{"sh", "-c", script}, CreateOptions{}, bundleOpts{})
	eventually(t, 5*time.Second, "some lines", func() bool { return len(readLog(t, c.log)) >= 3 })

	if err := os.Rename(c.log, c.log+".1"); err != nil {
		t.Fatal(err)
	}
	if err := rt.ReopenLog(t.Context(), c.id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "lines in the new file", func() bool { return len(readLog(t, c.log)) >= 3 })
	if err := rt.Stop(t.Context(), c.id, 0, 0); err != nil {
		t.Fatal(err)
	}
	old, cur := readLog(t, c.log+".1"), readLog(t, c.log)
	last, _ := strconv.Atoi(old[len(old)-1].content)
	first, _ := strconv.Atoi(cur[0].content)
	if first != last+1 {
		t.Errorf("rotated file ends at %d, new file starts at %d", last, first)
	}
}

func TestStopKillsAProcessIgnoringSIGTERMAfterTheTimeout(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := run(t, rt, e, []string{"sh", "-c", `trap "" TERM; while true; do sleep 0.1; done`}, CreateOptions{}, bundleOpts{})
	begin := time.Now()
	if err := rt.Stop(t.Context(), c.id, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < time.Second || took > 3*time.Second {
		t.Errorf("Stop with a 1s timeout took %s", took)
	}
	st, err := rt.Status(t.Context(), c.id)
	if err != nil || st.State != StateExited || st.ExitCode != 137 {
		t.Errorf("status %+v, %v; want exited with 137", st, err)
	}
	if err := rt.Stop(t.Context(), c.id, 0, time.Second); err != nil {
		t.Errorf("Stop of an exited container: %v", err)
	}
}

func TestStopReturnsAsSoonAsTheProcessHandlesSIGTERM(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := run(t, rt, e, []string{"sh", "-c", `trap "exit 0" TERM; while true; do sleep 0.1; done`}, CreateOptions{}, bundleOpts{})
	time.Sleep(100 * time.Millisecond) // let sh install the trap
	begin := time.Now()
	if err := rt.Stop(t.Context(), c.id, 0, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("Stop took %s", took)
	}
	if st, _ := rt.Status(t.Context(), c.id); st.ExitCode != 0 || st.Reason != monitor.ReasonCompleted {
		t.Errorf("status %+v, want exit 0 Completed", st)
	}
}

func TestOOMKillIsReported(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	// The shell keeps 200 MB of command output in memory under a 32 MiB limit.
	script := `x=$(head -c 200000000 /dev/zero | tr '\0' x); echo ${#x}`
	c := run(t, rt, e, []string{"sh", "-c", script}, CreateOptions{}, bundleOpts{memoryLimit: 32 << 20})
	if st := waitExited(t, rt, c.id); st.Reason != monitor.ReasonOOMKilled {
		t.Errorf("status %+v, want reason OOMKilled", st)
	}
}

// The memory cgroup the monitor counts OOM kills in is computed from the
// spec's cgroupsPath (package cgroup, as stats reads it); it must be the
// one the kernel shows for the container's init.
func TestMonitorCountsOOMKillsInTheInitsMemoryCgroup(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := create(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	st, err := rt.Status(t.Context(), c.id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var kernel, unified string
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		switch {
		case len(parts) != 3:
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			kernel = filepath.Join("/sys/fs/cgroup/memory", parts[2])
		case parts[0] == "0":
			unified = filepath.Join("/sys/fs/cgroup", parts[2])
		}
	}
	if kernel == "" { // v2 only: memory is in the unified hierarchy
		kernel = unified
	}
	cfg, err := monitor.ReadConfig(filepath.Join(e.state, c.id))
	if err != nil {
		t.Fatal(err)
	}
	if kernel == "" || cfg.MemoryCgroup != kernel {
		t.Fatalf("monitor counts OOM kills in %q, the kernel has the init in %q", cfg.MemoryCgroup, kernel)
	}
}

func TestStatusLogsAndExitSurviveANewRuntime(t *testing.T) {
	e := newEnv(t)
	a := e.runtime(t)
	script := `echo hello-from-a; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo bye; exit 3`
	c := run(t, a, e, []string{"sh", "-c", script}, CreateOptions{}, bundleOpts{})
	stA, err := a.Status(t.Context(), c.id)
	if err != nil {
		t.Fatal(err)
	}
	a = nil // dropped: B must manage with the directories alone

	b := e.runtime(t)
	stB, err := b.Status(t.Context(), c.id)
	if err != nil || stB.State != StateRunning || stB.Pid != stA.Pid || !stB.StartedAt.Equal(stA.StartedAt) {
		t.Fatalf("B sees %+v, %v; A saw %+v", stB, err, stA)
	}
	eventually(t, 5*time.Second, "A's container's log", func() bool { return logText(t, c.log) == "hello-from-a\n" })
	if _, _, code, err := b.ExecSync(t.Context(), c.id, []string{"touch", "/tmp/go"}, 5*time.Second); err != nil || code != 0 {
		t.Fatalf("ExecSync through B: %d, %v", code, err)
	}
	if st := waitExited(t, b, c.id); st.ExitCode != 3 {
		t.Errorf("B reads %+v, want exit 3", st)
	}
	if got := logText(t, c.log); got != "hello-from-a\nbye\n" {
		t.Errorf("log %q", got)
	}
}

// launcherMain is the "daemon" of TestContainerOutlivesItsKilledLauncher: it
// creates and starts a container, says so, and waits to be killed.
func launcherMain() int {
	rt, err := New(Config{Root: os.Getenv("L_ROOT"), StateDir: os.Getenv("L_STATE"), MonitorCmd: []string{os.Args[0], "monitor"}})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	o := CreateOptions{ID: os.Getenv("L_ID"), Bundle: os.Getenv("L_BUNDLE"), LogPath: os.Getenv("L_LOG")}
	if err := rt.Create(context.Background(), o); err != nil {
		fmt.Println(err)
		return 1
	}
	if err := rt.Start(context.Background(), o.ID); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("started")
	time.Sleep(time.Hour)
	return 0
}

func TestContainerOutlivesItsKilledLauncher(t *testing.T) {
	e := newEnv(t)
	id := newID(t)
	logPath := filepath.Join(e.logs, id+".log")
	script := `i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo tick $i; sleep 0.05; done; exit 3`
	bundle := writeBundle(t, id, []string{"sh", "-c", script}, bundleOpts{})
	// The launcher runs in its own process group, like a daemon would, so
	// killing it is all that happens to it.
	cmd := exec.Command(testBinary)
	cmd.Env = append(os.Environ(), launcherEnv+"=1", "L_ROOT="+e.root, "L_STATE="+e.state, "L_ID="+id, "L_BUNDLE="+bundle, "L_LOG="+logPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rt := e.runtime(t)
	t.Cleanup(func() { rt.Delete(context.Background(), id) })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "started\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("launcher: %q", line)
	}
	monitorPid := monitor.Pid(filepath.Join(e.state, id))
	st, err := rt.Status(t.Context(), id)
	if err != nil || st.State != StateRunning {
		t.Fatalf("status %+v, %v", st, err)
	}

	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	eventually(t, 5*time.Second, "the monitor to be re-parented", func() bool {
		return parentOf(monitorPid) == os.Getpid()
	})
	if !alive(st.Pid) || !alive(monitorPid) {
		t.Fatalf("after kill -9 of the launcher: init alive %v, monitor alive %v", alive(st.Pid), alive(monitorPid))
	}
	// Signals meant for the daemon (killall crivet, a hangup) spare the monitor.
	syscall.Kill(monitorPid, syscall.SIGTERM)
	syscall.Kill(monitorPid, syscall.SIGHUP)
	n := len(readLog(t, logPath))
	eventually(t, 5*time.Second, "the log to keep growing", func() bool { return len(readLog(t, logPath)) >= n+5 })

	if !alive(monitorPid) {
		t.Fatal("the monitor died of SIGTERM/SIGHUP")
	}
	if _, _, code, err := rt.ExecSync(t.Context(), id, []string{"touch", "/tmp/stop"}, 5*time.Second); err != nil || code != 0 {
		t.Fatalf("ExecSync: %d, %v", code, err)
	}
	if st := waitExited(t, rt, id); st.ExitCode != 3 {
		t.Errorf("exit recorded after the launcher died: %+v, want 3", st)
	}
	if err := rt.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	// It is our child now (we are a subreaper); it must have ended.
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(monitorPid, &ws, 0, nil); pid != monitorPid {
		t.Errorf("reaping the monitor: %d, %v", pid, err)
	}
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

func TestDeleteLeavesNoProcessStateOrCgroup(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	st, err := rt.Status(t.Context(), c.id)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.state, c.id)
	monitorPid := monitor.Pid(dir)
	if !alive(monitorPid) || len(cgroupDirs(c.id)) == 0 {
		t.Fatalf("before Delete: monitor %d alive %v, cgroups %v", monitorPid, alive(monitorPid), cgroupDirs(c.id))
	}

	if err := rt.Delete(t.Context(), c.id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the monitor to be reaped", func() bool { return !alive(monitorPid) })
	if alive(st.Pid) {
		t.Errorf("init %d still runs", st.Pid)
	}
	if _, err := os.Stat(filepath.Join(e.root, c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("runc state left: %v", err)
	}
	if d := cgroupDirs(c.id); len(d) != 0 {
		t.Errorf("cgroups left: %v", d)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left: %v", err)
	}
	if _, err := rt.Status(t.Context(), c.id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Status after Delete: %v, want ErrNotFound", err)
	}
	if err := rt.Delete(t.Context(), c.id); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := rt.Delete(t.Context(), "never-existed"); err != nil {
		t.Errorf("Delete of an unknown container: %v", err)
	}
}

func TestCreateFailureReportsRuncErrorAndLeavesNothing(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	id := newID(t)
	err := rt.Create(t.Context(), CreateOptions{ID: id, Bundle: writeBundle(t, id, []string{"/no/such/binary"}, bundleOpts{})})
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("Create: %v, want runc's error", err)
	}
	if _, err := os.Stat(filepath.Join(e.state, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.root, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("runc state left: %v", err)
	}
	if d := cgroupDirs(id); len(d) != 0 {
		t.Errorf("cgroups left: %v", d)
	}
}

func TestCreateRefusesADuplicateID(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := create(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	err := rt.Create(t.Context(), CreateOptions{ID: c.id, Bundle: writeBundle(t, c.id, []string{"true"}, bundleOpts{})})
	if !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("second Create: %v, want ErrAlreadyExists", err)
	}
}

func TestUnknownContainerIsNotFound(t *testing.T) {
	rt := newEnv(t).runtime(t)
	if _, err := rt.Status(t.Context(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Status: %v", err)
	}
	if err := rt.Stop(t.Context(), "nope", 0, time.Second); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stop: %v", err)
	}
	if _, _, _, err := rt.ExecSync(t.Context(), "nope", []string{"true"}, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("ExecSync: %v", err)
	}
	if err := rt.Start(t.Context(), "../x"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Start with a path as id: %v", err)
	}
}

func TestUpdateSetsLimitsAndSkipsHugepagesWithoutTheController(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	limit := int64(64 << 20)
	res := &specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: &limit},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 0}},
	}
	if err := rt.Update(t.Context(), c.id, res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", cgroupParent, c.id, "memory.limit_in_bytes"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no cgroup v1 memory hierarchy to check the limit in")
	}
	if err != nil || strings.TrimSpace(string(b)) != strconv.FormatInt(limit, 10) {
		t.Errorf("memory.limit_in_bytes = %s", b)
	}
}

// A daemon killed inside StartContainer leaves the start's intent behind.
// Killed before runc start, the container is Created (not Running, as a
// lone start time once made it look); killed after, it is Running with the
// start time kept, and the record is finished.
func TestStartCutShortByACrashReportsTheTruth(t *testing.T) {
	e := newEnv(t)
	when := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	for _, runcStarted := range []bool{false, true} {
		rt := e.runtime(t)
		c := create(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
		dir := filepath.Join(rt.cfg.StateDir, c.id)
		if err := os.WriteFile(filepath.Join(dir, startingFile), []byte(when.Format(time.RFC3339Nano)), 0o600); err != nil {
			t.Fatal(err)
		}
		if runcStarted {
			if out, err := exec.Command(rt.cfg.Runc, "--root", rt.cfg.Root, "start", c.id).CombinedOutput(); err != nil {
				t.Fatalf("runc start: %v: %s", err, out)
			}
		}
		// A restarted daemon: nothing cached.
		st, err := e.runtime(t).Status(t.Context(), c.id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case !runcStarted && st.State != StateCreated:
			t.Errorf("start cut short before runc start: state %s, want created", st.State)
		case runcStarted && (st.State != StateRunning || !st.StartedAt.Equal(when)):
			t.Errorf("start cut short after runc start: %s since %s, want running since %s", st.State, st.StartedAt, when)
		case runcStarted:
			if _, err := os.Stat(filepath.Join(dir, startedFile)); err != nil {
				t.Errorf("the start record was not finished: %v", err)
			}
		}
		if !runcStarted {
			// And a StartContainer retried by kubelet does start it.
			if err := rt.Start(t.Context(), c.id); err != nil {
				t.Fatal(err)
			}
			if st, _ := rt.Status(t.Context(), c.id); st.State != StateRunning {
				t.Errorf("after the retried start: %s", st.State)
			}
		}
	}
}

// Release at exit frees runc's state and the cgroup, and nothing CRI still
// reads: the status, exit code and log stay until Delete, which then has
// no runc to run. A container still running is not touched.
func TestReleaseFreesRuncStateOfAnExitedContainerOnly(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	running := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	if err := rt.Release(t.Context(), running.id); err != nil {
		t.Fatalf("Release of a running container: %v", err)
	}
	if st, err := rt.Status(t.Context(), running.id); err != nil || st.State != StateRunning {
		t.Fatalf("after Release, the running container is %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(e.root, running.id)); err != nil || len(cgroupDirs(running.id)) == 0 {
		t.Fatalf("Release took a running container's runc state (%v) or cgroup (%v)", err, cgroupDirs(running.id))
	}

	c := run(t, rt, e, []string{"sh", "-c", "echo bye; exit 3"}, CreateOptions{}, bundleOpts{})
	waitExited(t, rt, c.id)
	if _, err := os.Stat(filepath.Join(e.root, c.id)); err != nil {
		t.Fatalf("runc state of the exited container missing before Release: %v", err)
	}
	if err := rt.Release(t.Context(), c.id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.root, c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("runc state left after Release: %v", err)
	}
	if d := cgroupDirs(c.id); len(d) != 0 {
		t.Errorf("cgroups left after Release: %v", d)
	}
	rt2 := e.runtime(t) // no cache: from the records alone
	st, err := rt2.Status(t.Context(), c.id)
	if err != nil || st.State != StateExited || st.ExitCode != 3 || st.FinishedAt.IsZero() {
		t.Errorf("status after Release: %+v, %v; want exited 3", st, err)
	}
	if !strings.Contains(logText(t, c.log), "bye") {
		t.Error("the log was lost")
	}
	if err := rt.Release(t.Context(), c.id); err != nil {
		t.Errorf("second Release: %v", err)
	}
	// Signals after the release: the container is not running, whatever
	// runc (which no longer knows it) would answer.
	if err := rt.Kill(t.Context(), c.id, syscall.SIGKILL, true); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Kill after Release: %v, want ErrNotRunning", err)
	}
	if err := rt.Stop(t.Context(), c.id, 0, 0); err != nil {
		t.Errorf("Stop after Release: %v", err)
	}
	if _, _, _, err := rt.ExecSync(t.Context(), c.id, []string{"true"}, time.Second); !errors.Is(err, ErrNotRunning) {
		t.Errorf("ExecSync after Release: %v, want ErrNotRunning", err)
	}
	if err := rt.Update(t.Context(), c.id, &specs.LinuxResources{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Update after Release: %v, want ErrNotRunning", err)
	}
	if err := rt.Delete(t.Context(), c.id); err != nil {
		t.Fatalf("Delete after Release: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.state, c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left after Delete: %v", err)
	}
}

// A container that exits while it is being stopped, with its release
// running as the exit watch would start it: Stop never fails on the runc
// state the release frees (conformance hit "lstat .../crivet-<id>: no such
// file or directory" from runc kill --all).
func TestStopRacingReleaseOfAnExitingContainer(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	for i := range 20 {
		c := run(t, rt, e, []string{"sh", "-c", "sleep 0.05"}, CreateOptions{}, bundleOpts{})
		dir := filepath.Join(e.state, c.id)
		released := make(chan error, 1)
		go func() {
			for {
				if _, ok, _ := monitor.ReadExit(dir); ok {
					released <- rt.Release(context.Background(), c.id)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		time.Sleep(time.Duration(40+i%4*5) * time.Millisecond)
		if err := rt.Stop(t.Context(), c.id, 0, 0); err != nil {
			t.Fatalf("round %d: Stop of a container exiting meanwhile: %v", i, err)
		}
		if err := <-released; err != nil {
			t.Fatalf("round %d: Release: %v", i, err)
		}
		if st, err := rt.Status(t.Context(), c.id); err != nil || st.State != StateExited {
			t.Fatalf("round %d: status %+v, %v", i, st, err)
		}
	}
}

// kubelet polls ContainerStatus every second, so a status read can land
// between runc start and the start record being finished. The read sees a
// running container with the start marker still there, exactly what a
// start cut short by a crash leaves; it must report the truth without
// taking the marker from under the live Start (issue 16: StartContainer
// failed with "rename .../starting .../started: no such file or directory"
// on a container that was running). The reads run in the hook, so the
// interleaving is forced, not hoped for: once through the Runtime doing
// the start, once through another (a second process on the same state).
func TestStatusDuringAStartInFlightLeavesTheStartItsRecord(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	other := e.runtime(t)
	c := create(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	dir := filepath.Join(e.state, c.id)
	var during []Status
	rt.afterRuncStart = func(id string) {
		for _, r := range []*Runtime{rt, other} {
			st, err := r.Status(t.Context(), id)
			if err != nil {
				t.Errorf("Status while the start is in flight: %v", err)
			}
			during = append(during, st)
		}
		if _, err := os.Stat(filepath.Join(dir, startingFile)); err != nil {
			t.Errorf("a status read took the marker of the start in flight: %v", err)
		}
	}
	before := time.Now()
	if err := rt.Start(t.Context(), c.id); err != nil {
		t.Fatalf("Start with status reads in flight: %v", err)
	}
	for i, st := range during {
		if st.State != StateRunning || st.StartedAt.Before(before.Add(-time.Second)) {
			t.Errorf("status read %d during the start: %s since %s, want running since the start", i, st.State, st.StartedAt)
		}
	}
	st, err := other.Status(t.Context(), c.id)
	if err != nil || st.State != StateRunning || st.StartedAt.IsZero() {
		t.Errorf("status after the start: %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, startedFile)); err != nil {
		t.Errorf("the start record was not finished: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, startingFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("start marker left after the start: %v", err)
	}
}

// kubelet lists containers and their stats every second or so, and each
// listing reads the status of every container, those being removed too. A
// read landing inside the removal of a state directory must not put a file
// back into it: the removal then fails with "directory not empty" (issue
// 16: RemoveContainer failing under load). os.RemoveAll unlinks in
// directory order, a hash order on most filesystems, so any order happens;
// here the removal goes step by step, exit record and monitor lock first
// (the order the monitor's lock file used to be re-created in), with
// status reads from this Runtime and from another after every unlink.
func TestStatusReadsDuringARemovalLeaveTheDirectoryEmpty(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	other := e.runtime(t)
	c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	if err := rt.Stop(t.Context(), c.id, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := rt.Release(t.Context(), c.id); err != nil {
		t.Fatal(err)
	}
	read := func(when string) {
		for _, r := range []*Runtime{rt, other} {
			r.forgetStatus(c.id)
			if st, err := r.Status(t.Context(), c.id); err != nil && !errors.Is(err, ErrNotFound) {
				t.Errorf("Status %s: %v", when, err)
			} else if st.State.Live() {
				t.Errorf("Status %s: %s", when, st.State)
			}
		}
	}
	steps, passes := 0, 0
	rt.removeAll = func(dir string) error {
		passes++
		first := []string{monitor.ExitFileName, "monitor.lock"}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, ent := range ents {
			if ent.Name() != first[0] && ent.Name() != first[1] {
				first = append(first, ent.Name())
			}
		}
		for _, name := range first {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return err
			}
			steps++
			read("after unlinking " + name)
		}
		return os.Remove(dir)
	}
	if err := rt.Delete(t.Context(), c.id); err != nil {
		t.Fatalf("Delete with status reads during the removal: %v", err)
	}
	if steps < 3 {
		t.Fatalf("the removal went through %d unlinks: the test did not interleave", steps)
	}
	if passes != 1 {
		// Delete tries again for an exec's runc, not for reads.
		t.Errorf("the removal took %d passes: a read put a file back into the directory", passes)
	}
	if _, err := os.Stat(filepath.Join(e.state, c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left: %v", err)
	}
}

// A restored container (runc restore, in the monitor) runs from Create
// on: it reports created until StartContainer, which records the start
// instead of running runc start (which would fail on a running
// container). Without CRIU here, the restore is stood in for by runc
// start behind the runtime's back, on a container marked restored.
func TestStartOfARestoredContainerRecordsTheStart(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	c := create(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	dir := filepath.Join(rt.cfg.StateDir, c.id)
	if err := os.WriteFile(filepath.Join(dir, restoredFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(rt.cfg.Runc, "--root", rt.cfg.Root, "start", c.id).CombinedOutput(); err != nil {
		t.Fatalf("runc start: %v: %s", err, out)
	}
	if st, err := rt.Status(t.Context(), c.id); err != nil || st.State != StateCreated {
		t.Fatalf("restored, before StartContainer: %v %v, want created", st.State, err)
	}
	if err := rt.Start(t.Context(), c.id); err != nil {
		t.Fatalf("start of a restored container: %v", err)
	}
	st, err := rt.Status(t.Context(), c.id)
	if err != nil || st.State != StateRunning || st.StartedAt.IsZero() {
		t.Fatalf("after StartContainer: %+v %v, want running with a start time", st, err)
	}
}
