package main

import (
	"context"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/crivet/crivet/metrics"
	"github.com/crivet/crivet/policy"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (c Config) policyModes() map[string]policy.Mode {
	modes := make(map[string]policy.Mode, len(c.SignaturePolicyModes))
	for ns, m := range c.SignaturePolicyModes {
		modes[ns] = policy.Mode(m) // checked by validate
	}
	return modes
}

// reloadable are the keys SIGHUP applies to the running daemon; every
// other key needs a restart (sockets, directories, the store).
var reloadable = map[string]bool{"log_level": true, "signature_policy_modes": true, "metrics_address": true}

// reload re-reads the configuration (files and the original flags) on
// SIGHUP, applies what can change while running, and says which changed
// keys need a restart. A configuration that does not load or validate
// changes nothing. It returns the configuration now in force.
func reload(flags *pflag.FlagSet, running Config, src Sources, log *slog.Logger, level *slog.LevelVar, policies *policy.Store, endpoint *metricsEndpoint) (Config, Sources) {
	notify(log, daemon.SdNotifyReloading)
	defer notify(log, daemon.SdNotifyReady)
	next, nextSrc, err := loadConfig(flags)
	if err == nil {
		err = next.validate()
	}
	if err != nil {
		log.Error("reload: configuration not applied", "error", err)
		return running, src
	}
	var applied, restart []string
	cur, nv := reflect.ValueOf(running), reflect.ValueOf(next)
	for i, key := range configKeys() {
		if reflect.DeepEqual(cur.Field(i).Interface(), nv.Field(i).Interface()) {
			continue
		}
		if reloadable[key] {
			applied = append(applied, key)
		} else {
			restart = append(restart, key)
		}
	}
	if next.MetricsAddress != running.MetricsAddress {
		if err := endpoint.set(next.MetricsAddress); err != nil {
			log.Error("reload: metrics endpoint not changed", "metrics_address", next.MetricsAddress, "error", err)
			next.MetricsAddress = running.MetricsAddress
			_ = endpoint.set(running.MetricsAddress)
		}
	}
	lvl, _ := parseLevel(next.LogLevel)
	setLevel(level, lvl)
	policies.SetModes(next.policyModes())
	// Keys that need a restart keep their running values, so what the
	// daemon reports stays what it does.
	applyReloadable(&running, next)
	for k, v := range nextSrc {
		if reloadable[strings.SplitN(k, ".", 2)[0]] {
			src[k] = v
		}
	}
	for k := range src {
		if strings.HasPrefix(k, "signature_policy_modes.") && nextSrc[k] == "" {
			delete(src, k)
		}
	}
	log.Info("reload: configuration applied", "changed", applied, "log_level", running.LogLevel, "signature_policy_modes", running.SignaturePolicyModes)
	if len(restart) > 0 {
		log.Warn("reload: these keys changed but take effect only after a restart", "keys", restart)
	}
	return running, src
}

func applyReloadable(running *Config, next Config) {
	running.LogLevel = next.LogLevel
	running.MetricsAddress = next.MetricsAddress
	running.SignaturePolicyModes = next.SignaturePolicyModes
}

// notify tells systemd (Type=notify) about the daemon's state; without
// NOTIFY_SOCKET it does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("sd_notify failed", "state", state, "error", err)
	}
}

func notifyReady(log *slog.Logger) {
	notify(log, daemon.SdNotifyReady+"\nSTATUS=serving CRI")
}

// watchdog pings systemd's watchdog (WatchdogSec=) at half its interval,
// but only after the daemon answered a CRI Version call on its own
// socket: a wedged gRPC server stops the pings and systemd restarts it.
func watchdog(ctx context.Context, log *slog.Logger, socket string) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}))
	if err != nil {
		log.Error("watchdog: cannot reach own socket", "error", err)
		return
	}
	defer conn.Close()
	client := runtimeapi.NewRuntimeServiceClient(conn)
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, interval/2)
		_, err := client.Version(cctx, &runtimeapi.VersionRequest{})
		cancel()
		if err != nil {
			log.Error("watchdog: CRI did not answer; not pinging systemd", "error", err)
			continue
		}
		notify(log, daemon.SdNotifyWatchdog)
	}
}

// metricsEndpoint serves the metrics at the configured address, if any;
// set moves or stops it (SIGHUP).
type metricsEndpoint struct {
	met *metrics.Metrics
	log *slog.Logger
	srv *metrics.Server
}

func (e *metricsEndpoint) set(addr string) error {
	if e.srv != nil {
		_ = e.srv.Close()
		e.srv = nil
		e.log.Info("metrics endpoint stopped")
	}
	if addr == "" {
		return nil
	}
	srv, err := e.met.Serve(addr, e.log)
	if err != nil {
		return err
	}
	e.srv = srv
	if _, loopback, _ := metrics.ListenAddress(addr); !loopback {
		e.log.Warn("metrics served beyond this host: they name namespaces and the node's workload", "metrics_address", srv.Addr())
	}
	e.log.Info("serving metrics", "address", srv.Addr())
	return nil
}
