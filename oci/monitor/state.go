// Package monitor is crivet's per-container monitor: a small process that
// starts one container with `runc create`, owns its stdio, writes its CRI
// log, reaps its init and records how it exited, and serves attach. It
// outlives the daemon, so a crash or restart of crivet loses none of that.
//
// The daemon runs it by re-executing its own binary (`crivet monitor <dir>`,
// see Main) and talks to it through files and a socket in <dir>, the
// container's state directory; this package holds both sides of that
// contract so no other package knows the file names or the wire format.
package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/crivet/crivet/internal/atomicfile"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Files in a container's state directory.
const (
	configFile = "monitor.json" // Config, written by the daemon before launch
	exitFile   = "exit.json"    // Exit, written once the init has been reaped
	// ExitFileName is the exit record's name in a state directory: its
	// existence alone says the container has exited.
	ExitFileName = exitFile
	lockFile     = "monitor.lock" // flock held for the monitor's whole life
	pidFile      = "monitor.pid"  // the monitor's own pid, for a last-resort kill
	initPidFile  = "init.pid"     // runc --pid-file
	socketName   = "ctl"          // attach, reopen-log, wait
	diagFile     = "monitor.log"  // the monitor's own diagnostics
	runcLogFile  = "runc.log"     // runc --log (json), where create errors are read
)

// Config is what the daemon hands a monitor; it stays in the state directory
// so a restarted daemon knows how the container was created.
type Config struct {
	ID      string `json:"id"`
	Bundle  string `json:"bundle"`
	LogPath string `json:"log_path,omitempty"`
	// LogDir is the pod's log directory LogPath lies in; when set, the log
	// is opened beneath it without crossing any symlink (see logFile.open).
	LogDir    string `json:"log_dir,omitempty"`
	Tty       bool   `json:"tty,omitempty"`
	Stdin     bool   `json:"stdin,omitempty"`
	StdinOnce bool   `json:"stdin_once,omitempty"`
	Runc      string `json:"runc"`
	RuncRoot  string `json:"runc_root"`
	// SystemdCgroup runs runc with --systemd-cgroup: the container's
	// cgroup is a systemd scope.
	SystemdCgroup bool `json:"systemd_cgroup,omitempty"`
	// MemoryCgroup is the absolute directory of the container's memory
	// cgroup (package cgroup computes it, for stats too), where the
	// kernel counts OOM kills; "" means OOM kills are not detected.
	MemoryCgroup string `json:"memory_cgroup,omitempty"`
	// Restore, when set, makes the container with `runc restore` from a
	// checkpoint instead of `runc create`: it is running once made.
	Restore *Restore `json:"restore,omitempty"`
}

// Restore is where a checkpoint's CRIU images are and CRIU may work.
type Restore struct {
	ImagePath string `json:"image_path"`
	WorkPath  string `json:"work_path"`
}

// runcArgs is the start of every runc command line the monitor runs.
func (c Config) runcArgs() []string {
	args := []string{"--root", c.RuncRoot}
	if c.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	return args
}

// Exit is how the container's init ended.
type Exit struct {
	Code       int32     `json:"exit_code"`
	Signal     int       `json:"signal,omitempty"` // set when the init was killed by a signal (Code is then 128+Signal)
	FinishedAt time.Time `json:"finished_at"`
	Reason     string    `json:"reason"` // OOMKilled, Completed or Error
	Message    string    `json:"message,omitempty"`
}

// Reasons, as kubelet shows them in ContainerStatus.reason.
const (
	ReasonOOMKilled = "OOMKilled"
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
)

// WriteConfig stores c in dir for the monitor (and a later daemon) to read.
func WriteConfig(dir string, c Config) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, configFile, b, false)
}

// ReadConfig reads the Config stored in dir.
func ReadConfig(dir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", filepath.Join(dir, configFile), err)
	}
	return c, nil
}

// ReadExit returns the recorded exit, or ok=false while none is recorded.
func ReadExit(dir string) (e Exit, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, exitFile))
	if errors.Is(err, os.ErrNotExist) {
		return e, false, nil
	}
	if err != nil {
		return e, false, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, false, fmt.Errorf("%s: %w", filepath.Join(dir, exitFile), err)
	}
	return e, true, nil
}

// RecordLostExit stores an exit for a container whose monitor died before
// recording one, so every later status reads the same answer. It refuses
// while a monitor is alive (that monitor owns the record) or the directory
// is being removed (see Hold), and never replaces an existing record.
func RecordLostExit(dir string, e Exit) (Exit, error) {
	unlock, err := tryLock(dir)
	if err != nil {
		return e, err
	}
	defer unlock()
	if prev, ok, err := ReadExit(dir); err != nil || ok {
		return prev, err
	}
	return e, writeExit(dir, e)
}

func writeExit(dir string, e Exit) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, exitFile, b, true)
}

// Alive reports whether a monitor still holds dir's lock. The kernel drops a
// flock when its holder dies, however it dies, so unlike a pid this cannot
// be fooled by pid reuse.
func Alive(dir string) bool {
	unlock, err := tryLock(dir)
	if err != nil {
		return errors.Is(err, errLocked)
	}
	unlock()
	return false
}

var errLocked = errors.New("monitor is running")

// Hold takes the lock of a directory whose monitor is gone, for the
// removal of that directory: while it is held, nothing records a lost exit
// there (a file written into a directory being emptied fails the removal).
// It fails while a monitor is alive; with no lock file there is nothing to
// hold and unlock does nothing.
func Hold(dir string) (unlock func(), err error) {
	unlock, err = tryLock(dir)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	return unlock, err
}

// tryLock takes the monitor's lock if no monitor holds it. It never
// creates the lock file: only a monitor does (at its start, before
// anything else), and a reader that created it could put a file back into
// a state directory a removal is emptying, failing that removal with
// "directory not empty". No lock file means no monitor ever ran there, or
// the directory is being removed: either way none is alive.
func tryLock(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// Pid returns the pid the monitor of dir recorded for itself (0 if none).
func Pid(dir string) int {
	return readPid(filepath.Join(dir, pidFile))
}

// InitPid returns the container init's pid as runc reported it (0 if none).
func InitPid(dir string) int {
	return readPid(filepath.Join(dir, initPidFile))
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		return 0
	}
	return pid
}

// writeFileAtomic replaces dir/name. durable adds fsyncs: the exit record
// gets them; files rewritten for every container created do not, as they
// are on the create path (and the run root is usually a tmpfs anyway).
func writeFileAtomic(dir, name string, b []byte, durable bool) error {
	return atomicfile.Write(filepath.Join(dir, name), b, 0o644, durable)
}
