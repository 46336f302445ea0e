// Command crivet is a Kubernetes CRI runtime that verifies image
// signatures on the node. See README.md.
package main

import (
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
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/oci/monitor"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/sandbox"
	"github.com/crivet/crivet/server"
	"github.com/sirupsen/logrus"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.1.0-dev"

func main() {
	// containers/storage unpacks layers in a re-executed child chrooted
	// into the target, so a hostile layer cannot write outside it.
	if reexec.Init() {
		return
	}
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "monitor":
		// Hidden: the per-container monitor, started by the daemon.
		os.Exit(monitor.Main(args))
	case "version":
		fmt.Printf("crivet %s\nCRI API v1 (k8s.io/cri-api v0.37)\n", version)
	case "config":
		err = printConfig(args)
	case "policy":
		err = policyCmd(args)
	case "help":
		fmt.Println("usage: crivet [serve] [flags] | crivet config [flags] | crivet policy lint [FILE|DIR] [flags] | crivet version\nrun 'crivet -h' for flags")
	default:
		err = fmt.Errorf("unknown command %q (want serve, config, policy, version)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crivet:", err)
		os.Exit(1)
	}
}

// policyCmd: `crivet policy lint [FILE|DIR] [flags]` checks the policy
// files the daemon would use (the configured global policy and namespace
// directory), or one FILE as a global policy, or DIR as the namespace
// directory. It prints one line per finding and exits 1 on any error.
func policyCmd(args []string) error {
	if len(args) == 0 || args[0] != "lint" {
		return errors.New("usage: crivet policy lint [FILE|DIR] [flags]")
	}
	args = args[1:]
	path := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		path, args = args[0], args[1:]
	}
	cfg, err := loadConfig(args, "crivet policy lint")
	if err != nil {
		return err
	}
	global, dir := cfg.SignaturePolicy, cfg.SignaturePolicyDir
	if path != "" {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			dir = path
		} else {
			global, dir = path, ""
		}
	}
	findings := policy.Lint(global, dir)
	errs := 0
	for _, f := range findings {
		fmt.Println(f)
		if f.Severity == "error" {
			errs++
		}
	}
	fmt.Printf("%d errors, %d warnings (global %s, namespaces %s)\n", errs, len(findings)-errs, global, dir)
	if errs > 0 {
		os.Exit(1)
	}
	return nil
}

func printConfig(args []string) error {
	cfg, err := loadConfig(args, "crivet config")
	if err != nil {
		return err
	}
	return toml.NewEncoder(os.Stdout).Encode(cfg)
}

func newLogger(cfg Config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("config: log_level %q: %w", cfg.LogLevel, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	// The containers libraries log through logrus; keep their chatter to
	// warnings unless we are debugging.
	logrus.SetOutput(os.Stderr)
	logrus.SetLevel(logrus.WarnLevel)
	if level <= slog.LevelDebug {
		logrus.SetLevel(logrus.DebugLevel)
	}
	return slog.New(h), nil
}

func serve(args []string) error {
	cfg, err := loadConfig(args, "crivet")
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	slog.SetDefault(log)

	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return err
	}
	unlock, err := lockRoot(cfg.Root)
	if err != nil {
		return err
	}
	defer unlock()

	policies := policy.NewStore(cfg.SignaturePolicy, cfg.SignaturePolicyDir)
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
	images, err := image.Open(image.Config{
		Root: cfg.Root, RunRoot: cfg.RunRoot, Driver: cfg.StorageDriver,
		RegistriesConf: cfg.RegistriesConf, RegistriesD: cfg.RegistriesD, AuthFile: cfg.GlobalAuthFile,
		Policies: policies, Audit: auditLog, Logger: log,
		PullProgressTimeout: time.Duration(cfg.PullProgressTimeout), MaxImageSize: cfg.MaxImageSize, MaxLayers: cfg.MaxLayers,
	})
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
		Runc: cfg.Runtime, Root: filepath.Join(cfg.RunRoot, "runc"),
		StateDir: filepath.Join(cfg.RunRoot, "containers"), MonitorCmd: monitorCmd, CgroupDriver: cgDriver,
	})
	if err != nil {
		return err
	}
	pause := cfg.PauseBinary
	if pause == "" {
		pause = filepath.Join(filepath.Dir(self), "crivet-pause")
	}
	if !fileExists(pause) {
		log.Warn("no pause binary: pods that share a PID namespace cannot start", "pause_binary", pause)
		pause = ""
	}
	lc := lifecycle.New(lifecycle.Config{
		Images: images, Pods: pods, Runtime: rt,
		RunRoot: cfg.RunRoot, PauseBinary: pause, SeccompProfileRoot: cfg.SeccompProfileRoot, CgroupDriver: cgDriver, Logger: log,
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Reconcile what a crash left before serving, and follow container exits.
	if err := lc.Run(ctx); err != nil {
		return err
	}
	srv, err := server.New(server.Options{
		Info:   server.Info{Version: version, CgroupDriver: cgDriver},
		Images: images, Pods: pods, Lifecycle: lc, Runtime: rt,
		StreamAddress: cfg.StreamAddress, Logger: log,
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

	g := grpc.NewServer(append(srv.ServerOptions(), grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))...)
	srv.Register(g)

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

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
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

// lockRoot makes sure only one crivet uses a root: two daemons over one
// image store would corrupt each other's records.
func lockRoot(root string) (func(), error) {
	path := filepath.Join(root, "crivet.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another crivet (pid %s) is already using root %s", strings.TrimSpace(string(pid)), root)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
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
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, err
	}
	return lis, nil
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
