// Package runtime runs containers with runc, one monitor process per
// container (package monitor) owning its stdio, log and exit status, so that
// containers and their records survive the daemon.
//
// State lives in two places: runc's (Config.Root) and the monitor's, one
// directory per container under Config.StateDir. Every answer is derived
// from those two, so a restarted daemon, or a second Runtime on the same
// directories, sees exactly what the first one saw.
package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crivet/crivet/internal/errclass"
	"github.com/crivet/crivet/internal/keyed"
	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/oci/monitor"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Sentinel errors, each of a class (internal/errclass) the CRI server
// maps to a gRPC code.
var (
	ErrNotFound        = errclass.New(errclass.NotFound, "not found")
	ErrAlreadyExists   = errclass.New(errclass.AlreadyExists, "already exists")
	ErrNotRunning      = errclass.New(errclass.FailedPrecondition, "container is not running")
	ErrInvalidArgument = errclass.New(errclass.InvalidArgument, "invalid argument")
	// ErrTimeout is returned (together with context.DeadlineExceeded) when
	// ExecSync's timeout fires; kubelet's exec probes want DeadlineExceeded.
	ErrTimeout = errors.New("timed out")
)

// Config locates runc, its state, the monitors' state and the monitor command.
type Config struct {
	// Runc is the runc binary, looked up on PATH when not absolute (default "runc").
	Runc string
	// Root is runc's --root, under the daemon's run root.
	Root string
	// StateDir holds one directory per container for its monitor,
	// e.g. <runroot>/containers.
	StateDir string
	// MonitorCmd is the argv prefix that runs monitor.Main; the container's
	// state directory is appended. Default: {"/proc/self/exe", "monitor"},
	// i.e. the running crivet binary's hidden `monitor` subcommand. The
	// crivet-monitor binary (cmd/crivet-monitor) does the same for
	// less: re-executing crivet initialises every library crivet links, which
	// measured ~23 ms more per Create and ~2.5 MiB more private memory per
	// container on the reference machine.
	MonitorCmd []string
	// CgroupDriver is the node's cgroup manager; with systemd every runc
	// command gets --systemd-cgroup. The zero value is cgroupfs. It is the
	// same for every handler: kubelet has one cgroup driver per node.
	CgroupDriver cgroup.Driver
	// Handlers are the named handlers besides the default (DefaultHandler,
	// which Runc and Root describe).
	Handlers []Handler
	// Kernel is what feature detection assumes of the kernel; the zero
	// value means the running one (CurrentKernel).
	Kernel *Kernel
}

// Runtime runs containers. It keeps no state of its own beyond a cache, so
// any number of Runtimes may share the same directories.
type Runtime struct {
	cfg Config
	// handlers: the default first, then the others by name. Fixed for
	// the Runtime's life; a configuration change needs a restart.
	handlers []*handler
	byID     sync.Map // container id → *handler: see handlerOf
	// featMu guards the handlers' Version and Features (DetectFeatures).
	featMu sync.RWMutex

	mu    sync.Mutex
	procs map[string]*specs.Process // exec template per container: its config.json process

	statuses sync.Map // id → Status: see cachedStatus
	// watching counts live exit watches (WatchExits): while one runs,
	// every exit record forgets the container's cached status, so a cached
	// live status can be trusted without asking the kernel.
	watching atomic.Int32
	// watchOverflows counts inotify queue overflows the exit watch
	// recovered from by rescanning (tests read it).
	watchOverflows atomic.Uint64
	// exits increases at each forgotten status: a status computed while it
	// changed may predate an exit and is not cached.
	exits  atomic.Uint64
	health health
	// runcState serialises, per container, what frees runc's state (a
	// release at exit, a removal) with what reads it (kill).
	runcState keyed.Mutex

	// afterRuncStart, when set (tests only), runs in Start between runc
	// start and the rename of the start marker: the moment a concurrent
	// status read meets a start in flight with the container already
	// running.
	afterRuncStart func(id string)
	// removeAll, when set (tests only), replaces os.RemoveAll for a
	// container's state directory in Delete, so that a test can run reads
	// between the unlinks of a removal.
	removeAll func(dir string) error
}

// New checks cfg and prepares its directories.
func New(cfg Config) (*Runtime, error) {
	if cfg.Root == "" || cfg.StateDir == "" {
		return nil, fmt.Errorf("runtime: Root and StateDir are required: %w", ErrInvalidArgument)
	}
	var err error
	if cfg.StateDir, err = filepath.Abs(cfg.StateDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	if len(cfg.MonitorCmd) == 0 {
		cfg.MonitorCmd = []string{"/proc/self/exe", "monitor"}
	}
	r := &Runtime{cfg: cfg, procs: map[string]*specs.Process{}}
	extra := slices.Clone(cfg.Handlers)
	slices.SortFunc(extra, func(a, b Handler) int { return strings.Compare(a.Name, b.Name) })
	for _, hc := range append([]Handler{{Name: DefaultHandler, Runc: cfg.Runc, Root: cfg.Root}}, extra...) {
		h, err := r.newHandler(hc)
		if err != nil {
			return nil, fmt.Errorf("runtime: %w", err)
		}
		r.handlers = append(r.handlers, h)
	}
	if err := checkHandlers(r.handlers); err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	r.cfg.Runc, r.cfg.Root = r.handlers[0].Runc, r.handlers[0].Root
	r.DetectFeatures(context.Background())
	return r, nil
}

// DetectFeatures asks each handler's runc what it can do, on this kernel,
// and keeps the answers for Handlers and Handler. It runs once when the
// Runtime is made and again when the daemon is told to reload (a runc
// binary replaced in place), never per Status call: kubelet asks every
// few seconds, and each detection runs runc twice per handler.
func (r *Runtime) DetectFeatures(ctx context.Context) {
	k := CurrentKernel()
	if r.cfg.Kernel != nil {
		k = *r.cfg.Kernel
	}
	for _, h := range r.handlers {
		v, f, err := DetectFeatures(ctx, h.Runc, k)
		if err != nil {
			// Not fatal: Ready reports a runc that does not run, and a
			// handler nothing can be detected of advertises nothing.
			f.Missing = append(f.Missing, err.Error())
		}
		r.featMu.Lock()
		h.Version, h.Features = v, f
		r.featMu.Unlock()
	}
}

// runc's own rule for container IDs; it also keeps IDs safe as file names.
var validID = regexp.MustCompile(`^[\w+\-.]+$`)

func (r *Runtime) dir(id string) (string, error) {
	if !validID.MatchString(id) || id == "." || id == ".." {
		return "", fmt.Errorf("container id %q: %w", id, ErrInvalidArgument)
	}
	return filepath.Join(r.cfg.StateDir, id), nil
}

// existing returns the state directory of a container this runtime created.
func (r *Runtime) existing(id string) (string, error) {
	dir, err := r.dir(id)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("container %s: %w", id, ErrNotFound)
		}
		return "", err
	}
	return dir, nil
}

// startedFile records when Start ran runc start. It is the runtime's; the
// monitor's files are listed in package monitor.
const (
	startedFile  = "started"
	startingFile = "starting" // a start in flight, or cut short by a crash
	// restoredFile marks a container made by runc restore (running since
	// Create).
	restoredFile = "restored"
)

func readStarted(dir string) time.Time { return readTime(filepath.Join(dir, startedFile)) }

func readTime(path string) time.Time {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	return t
}

// runcErr turns go-runc's "exit status 1: <runc stderr>" into runc's own
// message, with a sentinel where the CRI server needs one.
func runcErr(err error) error {
	if err == nil {
		return nil
	}
	msg := runcMessage(err.Error())
	switch {
	case strings.Contains(msg, "does not exist"):
		return fmt.Errorf("%s: %w", msg, ErrNotFound)
	case strings.Contains(msg, "not running"), strings.Contains(msg, "stopped"):
		return fmt.Errorf("%s: %w", msg, ErrNotRunning)
	}
	return errors.New(msg)
}

func runcMessage(s string) string {
	var msgs []string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '{'); i >= 0 {
			var e struct{ Level, Msg string }
			if json.Unmarshal([]byte(line[i:]), &e) == nil && e.Level == "error" {
				msgs = append(msgs, e.Msg)
			}
		}
	}
	if len(msgs) > 0 {
		return strings.Join(msgs, "; ")
	}
	return strings.TrimSpace(s)
}

// processTemplate is the container's process from its bundle: exec'd
// processes run with its user, environment, capabilities and cwd, as in
// containerd and CRI-O.
func (r *Runtime) processTemplate(id, dir string) (*specs.Process, error) {
	r.mu.Lock()
	p := r.procs[id]
	r.mu.Unlock()
	if p != nil {
		return p, nil
	}
	cfg, err := monitor.ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	spec, err := readSpec(cfg.Bundle)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.procs[id] = spec.Process
	r.mu.Unlock()
	return spec.Process, nil
}

// readSpec reads a bundle's config.json.
func readSpec(bundle string) (*specs.Spec, error) {
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("%s has no process", path)
	}
	return &spec, nil
}

// memoryCgroup is the directory where the kernel counts the OOM kills of
// the container spec describes: the one cgroup.Dir names for stats too.
func (r *Runtime) memoryCgroup(spec *specs.Spec) (string, error) {
	var path string
	if spec.Linux != nil {
		path = spec.Linux.CgroupsPath
	}
	dir, err := r.cfg.CgroupDriver.Dir(path)
	if err != nil {
		return "", err
	}
	return cgroup.ControllerDir(dir, "memory"), nil
}

func (r *Runtime) forget(id string) {
	r.mu.Lock()
	delete(r.procs, id)
	r.mu.Unlock()
	r.byID.Delete(id)
}

// lostExitCode is what a container whose exit status could not be collected
// reports (containerd uses the same value for the same case).
const lostExitCode = 255

// waitExit waits up to d for the container's exit to be recorded. When its
// monitor is gone without a record (killed), it waits for runc to see the
// init gone and records the exit as lost, once, so every later Status agrees.
func (r *Runtime) waitExit(ctx context.Context, id, dir string, d time.Duration) (monitor.Exit, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	e, err := monitor.Wait(ctx, dir)
	if err == nil || ctx.Err() != nil {
		return e, err
	}
	// The monitor may have recorded the exit and closed its socket while
	// we were talking to it (a broken pipe, a reset): the record decides.
	if e, ok, _ := monitor.ReadExit(dir); ok {
		return e, nil
	}
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		if e, ok, _ := monitor.ReadExit(dir); ok {
			return e, nil
		}
		if !errors.Is(err, monitor.ErrGone) && monitor.Alive(dir) {
			// A live monitor that refused the wait: it will record the exit.
			select {
			case <-ctx.Done():
				return e, ctx.Err()
			case <-time.After(delay):
			}
			continue
		}
		c, err := r.handlerOf(id).runc.State(ctx, id)
		if err != nil || c.Status == "stopped" {
			if err != nil && !errors.Is(runcErr(err), ErrNotFound) {
				return e, runcErr(err)
			}
			return monitor.RecordLostExit(dir, monitor.Exit{
				Code:       lostExitCode,
				FinishedAt: time.Now(),
				Reason:     monitor.ReasonError,
				Message:    "exit status lost: the container's monitor died before the container",
			})
		}
		select {
		case <-ctx.Done():
			return e, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// List returns the IDs of every container this runtime has state for: a
// monitor directory, runc state under any handler's root, or both (a
// crash can leave either alone).
func (r *Runtime) List() ([]string, error) {
	seen := map[string]bool{}
	var ids []string
	dirs := []string{r.cfg.StateDir}
	for _, h := range r.handlers {
		dirs = append(dirs, h.Root)
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() && validID.MatchString(e.Name()) && !seen[e.Name()] {
				seen[e.Name()] = true
				ids = append(ids, e.Name())
			}
		}
	}
	return ids, nil
}

// exists reports whether anything of the container is on the node: its
// monitor directory or runc's state directory.
func (r *Runtime) exists(id, dir string) bool {
	if _, err := os.Lstat(dir); err == nil {
		return true
	}
	_, err := os.Lstat(filepath.Join(r.handlerOf(id).Root, id))
	return err == nil
}
