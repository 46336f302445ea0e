package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/internal/reserve"
	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/lifecycle/nri"
	"github.com/crivet/crivet/metrics"
	"github.com/crivet/crivet/oci/cdi"
	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/sandbox"
	"github.com/crivet/crivet/server"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

func serve(flags *pflag.FlagSet) error {
	cfg, src, err := loadConfig(flags)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log, level, err := newLogger(cfg, os.Stderr)
	if err != nil {
		return err
	}
	slog.SetDefault(log)

	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return err
	}
	if n := waitHalfForkedChildren(halfForkWait); n > 0 {
		log.Warn("waited for children a killed crivet was starting", "processes", n)
	}
	unlock, err := lockRoot(cfg.Root)
	if err != nil {
		return err
	}
	defer unlock()

	// Before anything else writes in the root: on a full disk, releasing
	// the reserve is what lets the store open and recovery record what it
	// finds (a node whose runtime cannot start cannot free space).
	space := reserve.New(cfg.Root, cfg.StorageReserve, log)
	if err := space.Prepare(); err != nil {
		log.Warn("space reserve unusable; continuing without it", "error", err)
	}

	// Counting costs ~0.3 µs per decision, so it always runs; metrics_address
	// only says whether (and where) the endpoint serves, and SIGHUP may
	// change that.
	met := metrics.New()
	policies := policy.NewStore(cfg.SignaturePolicy, cfg.SignaturePolicyDir)
	policies.OnLoad(met.PolicyLoaded)
	policies.SetModes(cfg.policyModes())
	for ns, mode := range cfg.SignaturePolicyModes {
		if mode == string(policy.Warn) {
			log.Warn("signature policy in warn mode: refusals are admitted and reported", "namespace", ns)
		}
	}
	if _, err := policies.Global(); err != nil {
		// Not fatal: the file may be fixed without a restart. Until then
		// every pull that would use it fails closed.
		log.Error("global signature policy unusable; pulls using it will fail", "policy", cfg.SignaturePolicy, "error", err)
	}
	var auditLog *audit.Log
	if cfg.AuditLog != "" {
		if auditLog, err = audit.Open(cfg.AuditLog, cfg.AuditLogMaxSize); err != nil {
			return err
		}
		defer auditLog.Close()
	}
	imageCfg := image.Config{
		Root: cfg.Root, RunRoot: cfg.RunRoot, Driver: cfg.StorageDriver,
		RegistriesConf: cfg.RegistriesConf, RegistriesD: cfg.RegistriesD, AuthFile: cfg.GlobalAuthFile,
		Policies: policies, Audit: auditLog, Logger: log, Observer: met,
		PullProgressTimeout: time.Duration(cfg.PullProgressTimeout), MaxImageSize: cfg.MaxImageSize, MaxLayers: cfg.MaxLayers,
	}
	images, err := image.Open(imageCfg)
	if errors.Is(err, syscall.ENOSPC) && space.Held() {
		// Less free than the store's start-up writes needed, though more
		// than the reserve: give it the reserve too.
		space.Release("opening the image store: " + err.Error())
		images, err = image.Open(imageCfg)
	}
	if err != nil {
		return err
	}
	defer images.Close()

	cgDriver, _ := cgroup.ParseDriver(cfg.CgroupManager) // checked by validate
	pods, err := sandbox.New(sandbox.Config{
		Root: cfg.Root, RunRoot: cfg.RunRoot,
		CNIConfDir: cfg.CNIConfigDir, CNIPluginDirs: cfg.CNIPluginDirs, CgroupDriver: string(cgDriver), Logger: log,
	})
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// The standalone monitor links only what it needs: starting it costs
	// ~25 ms less per container than re-executing crivet.
	monitorCmd := []string{self, "monitor"}
	if m := filepath.Join(filepath.Dir(self), "crivet-monitor"); fileExists(m) {
		monitorCmd = []string{m}
	}
	rt, err := runtime.New(runtime.Config{
		Runc: cfg.Runtime, Root: cfg.defaultRuncRoot(), Handlers: cfg.runtimeHandlers(),
		StateDir: filepath.Join(cfg.RunRoot, "containers"), MonitorCmd: monitorCmd, CgroupDriver: cgDriver,
	})
	if err != nil {
		return err
	}
	logHandlers(log, rt)
	pause := cfg.PauseBinary
	if pause == "" {
		pause = filepath.Join(filepath.Dir(self), "crivet-pause")
	}
	if !fileExists(pause) {
		log.Warn("no pause binary: pods that share a PID namespace cannot start", "pause_binary", pause)
		pause = ""
	}
	devices := cdi.New(cfg.CDISpecDirs)
	lcCfg := lifecycle.Config{
		Images: images, Pods: pods, Runtime: rt,
		RunRoot: cfg.RunRoot, PauseBinary: pause, SeccompProfileRoot: cfg.SeccompProfileRoot, CgroupDriver: cgDriver, CDI: devices, Logger: log,
	}
	var plugins *nri.NRI
	var pluginInfo func() any
	if cfg.NRI.Enable {
		n := cfg.NRI
		nc := nri.Config{
			SocketPath: n.SocketPath, PluginPath: n.PluginPath, PluginConfigPath: n.PluginConfigPath,
			RegistrationTimeout: time.Duration(n.RegistrationTimeout), RequestTimeout: time.Duration(n.RequestTimeout),
			RuntimeName: "crivet", RuntimeVersion: version,
			Pods: pods, Runtime: rt, Observer: met, Logger: log,
		}
		if devices != nil { // a nil *Registry in the interface would read as CDI on
			nc.CDI = devices
		}
		if plugins, err = nri.New(nc); err != nil {
			return err
		}
		lcCfg.Plugins, pluginInfo = plugins, plugins.Info
	}
	lc := lifecycle.New(lcCfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// What crictl info shows: the configuration in force, updated by SIGHUP.
	var shown atomic.Value
	shown.Store(configEntries(cfg, src))
	reloads := make(chan os.Signal, 1)
	signal.Notify(reloads, syscall.SIGHUP)
	defer signal.Stop(reloads)
	// Reconcile what a crash left before serving, and follow container exits.
	if err := lc.Run(ctx); err != nil {
		return err
	}
	// Plugins start once the records are reconciled: their
	// synchronization is the node as it is.
	if plugins != nil {
		if err := plugins.Start(); err != nil {
			return err
		}
		defer plugins.Stop()
	}
	srv, err := server.New(server.Options{
		Info: server.Info{Version: version, CgroupDriver: cgDriver,
			Config: func() any { return shown.Load() }, Policies: policies, Handlers: rt.Handlers,
			// crivet builds user-namespaced pods (hostUsers: false); a
			// handler advertises them where its runc and the kernel
			// make id-mapped mounts.
			UserNamespaces: spec.UserNamespaces, Plugins: pluginInfo, CDI: devices.State},
		Images: images, Pods: pods, Lifecycle: lc, Runtime: rt,
		StreamAddress: cfg.StreamAddress, Logger: log, Observer: met, Space: space,
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	lis, err := listen(cfg.Listen)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Listen)

	met.Watch(metrics.Inventory{Images: images, Pods: pods, States: lc, Events: lc})
	endpoint := &metricsEndpoint{met: met, log: log}
	if err := endpoint.set(cfg.MetricsAddress); err != nil {
		return err
	}
	defer endpoint.set("")

	g := srv.GRPCServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	if h, err := spec.CurrentHost(); err == nil {
		if aa := h.AppArmorState; aa.DefaultProfile != "" {
			log.Info("AppArmor: RuntimeDefault applies the default profile", "profile", aa.DefaultProfile)
		} else {
			log.Warn("AppArmor: RuntimeDefault applies no profile", "reason", aa.Reason)
		}
	}
	log.Info("crivet serving CRI", "version", version, "cgroup_manager", cgDriver, "listen", cfg.Listen, "root", cfg.Root, "policy", cfg.SignaturePolicy, "policy_dir", cfg.SignaturePolicyDir)

	notifyReady(log)
	go watchdog(ctx, log, cfg.Listen)
	// A reserve released on a full disk comes back once space does, even
	// if nothing is pulled meanwhile.
	go space.Watch(ctx, time.Minute)
	running := cfg
	for done := false; !done; {
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			done = true
		case <-reloads:
			running, src = reload(flags, running, src, log, level, policies, endpoint)
			// A runc replaced in place (an upgrade) may do more, or less.
			rt.DetectFeatures(ctx)
			logHandlers(log, rt)
			shown.Store(configEntries(running, src))
		}
	}
	notify(log, daemon.SdNotifyStopping)
	log.Info("shutting down")
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		// A streaming call or a long pull must not hold the node's
		// runtime hostage at shutdown.
		g.Stop()
	}
	return nil
}

// logHandlers logs each runtime handler and what it can do.
func logHandlers(log *slog.Logger, rt *runtime.Runtime) {
	for _, h := range rt.Handlers() {
		log.Info("runtime handler", "name", h.Name, "runc", h.Runc, "version", h.Version, "root", h.Root,
			"recursive_read_only_mounts", h.Features.RecursiveReadOnlyMounts, "idmapped_mounts", h.Features.IDMappedMounts, "missing", h.Features.Missing)
	}
}

// lockRoot makes sure only one crivet uses a root: two daemons over one
// image store would corrupt each other's records. A daemon killed with
// SIGKILL can leave the lock held for a moment by a child it was forking
// (the child holds a copy of every descriptor until it execs), so a lock
// held by someone else is retried for rootLockWait before giving up.
func lockRoot(root string) (func(), error) {
	path := filepath.Join(root, "crivet.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	deadline := time.Now().Add(rootLockWait)
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		pid, _ := os.ReadFile(path)
		holder := lockHolder(f)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another crivet (pid %s) is already using root %s%s", strings.TrimSpace(string(pid)), root, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

const rootLockWait = 5 * time.Second

// halfForkWait bounds waitHalfForkedChildren.
const halfForkWait = 5 * time.Second

// waitHalfForkedChildren waits, up to d, while another process is still a
// copy of this daemon: same executable, same command line. Those are
// children a previous crivet was starting (a CNI plugin, runc) when it was
// killed, between fork and exec. Until they exec they hold that daemon's
// descriptors (the root lock among them) and do not yet show what they are
// (a CNI plugin's CNI_CONTAINERID), so recovery could run a CNI DEL before
// the ADD they are about to run. It returns how many it saw.
func waitHalfForkedChildren(d time.Duration) int {
	self, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	cmdline, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		return 0
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(d)
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		copies := 0
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid := e.Name()
			if pid == strconv.Itoa(os.Getpid()) || pid[0] < '0' || pid[0] > '9' {
				continue
			}
			if exe, err := os.Readlink("/proc/" + pid + "/exe"); err != nil || exe != self {
				continue
			}
			if c, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && bytes.Equal(c, cmdline) {
				copies++
				seen[pid] = true
			}
		}
		if copies == 0 || time.Now().After(deadline) {
			return len(seen)
		}
		time.Sleep(delay)
	}
}

// lockHolder names the process /proc/locks says holds f's lock, as
// "; the lock is held by pid N (cmdline)", or "" if it cannot tell.
func lockHolder(f *os.File) string {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return ""
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return ""
	}
	// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
	want := fmt.Sprintf(":%d", st.Ino)
	for _, line := range strings.Split(string(locks), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 6 || fields[1] != "FLOCK" || !strings.HasSuffix(fields[5], want) {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + fields[4] + "/cmdline")
		return fmt.Sprintf("; the lock is held by pid %s (%s)", fields[4], strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	return ""
}

func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s is in use by another server", path)
	}
	// A socket file nobody answers on is a leftover of a crash.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return listenUnix(path, 0o660)
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
