package nri

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	nrilog "github.com/containerd/nri/pkg/log"
)

// PluginInfo is one connected plugin as crictl info shows it.
type PluginInfo struct {
	Name      string    `json:"name"`
	Since     time.Time `json:"connectedSince"`
	Calls     uint64    `json:"calls"`
	Failures  uint64    `json:"failures"`
	LastError string    `json:"lastError,omitempty"`
}

// tracker knows which plugins are connected, counting their calls. The
// library keeps its plugin list to itself; it tells a runtime of calls
// (adaptation.Metrics) and logs each connection and disconnection, so the
// list is kept from those: a plugin is connected from its first
// successful synchronization until the library logs its connection
// closed, or drops it after a failure.
type tracker struct {
	log *slog.Logger
	obs Observer

	mu        sync.Mutex
	connected map[string]*PluginInfo
}

func newTracker(log *slog.Logger, obs Observer) *tracker {
	return &tracker{log: log, obs: obs, connected: map[string]*PluginInfo{}}
}

func (t *tracker) plugins() []PluginInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []PluginInfo{}
	for _, name := range slices.Sorted(maps.Keys(t.connected)) {
		out = append(out, *t.connected[name])
	}
	return out
}

func (t *tracker) connect(name string) {
	t.mu.Lock()
	if _, ok := t.connected[name]; !ok {
		t.connected[name] = &PluginInfo{Name: name, Since: time.Now()}
	}
	n := len(t.connected)
	t.mu.Unlock()
	t.obs.NRIPlugins(n)
	t.log.Info("NRI plugin connected", "plugin", name)
}

func (t *tracker) disconnect(name, why string) {
	t.mu.Lock()
	_, ok := t.connected[name]
	delete(t.connected, name)
	n := len(t.connected)
	t.mu.Unlock()
	if ok {
		t.obs.NRIPlugins(n)
		t.log.Warn("NRI plugin disconnected", "plugin", name, "reason", why)
	}
}

// RecordPluginInvocation (adaptation.Metrics) counts a call.
func (t *tracker) RecordPluginInvocation(plugin, op string, err error) {
	t.obs.NRIPluginCall(plugin, op, err != nil)
	if op == "Synchronize" && err == nil {
		t.connect(plugin)
	}
	t.mu.Lock()
	if p, ok := t.connected[plugin]; ok {
		p.Calls++
		if err != nil {
			p.Failures++
			p.LastError = op + ": " + err.Error()
		}
	}
	t.mu.Unlock()
}

func (t *tracker) RecordPluginLatency(string, string, time.Duration) {}
func (t *tracker) RecordPluginAdjustments(string, string, *adaptation.ContainerAdjustment, int, int) {
}

// UpdatePluginCount: the library's count after it removed closed
// plugins; none left means none connected, whatever the log said.
func (t *tracker) UpdatePluginCount(n int) {
	if n != 0 {
		return
	}
	t.mu.Lock()
	names := slices.Collect(maps.Keys(t.connected))
	t.mu.Unlock()
	for _, name := range names {
		t.disconnect(name, "no plugin left registered")
	}
}

// logger routes the library's log into crivet's, and watches for the
// messages that say a plugin went away. They are matched by their format
// string, as github.com/containerd/nri v0.12.5 writes them (a test in
// this package fails if they change).
type logger struct {
	log   *slog.Logger
	track *tracker
}

// libLogger is the one logger the library has (its logger is process
// wide): it forwards to the NRI instance made last, which in the daemon
// is the only one.
var (
	libLogger  atomic.Pointer[logger]
	libLogOnce sync.Once
)

type forward struct{}

func (forward) Debugf(ctx context.Context, format string, args ...any) {
	libLogger.Load().Debugf(ctx, format, args...)
}
func (forward) Infof(ctx context.Context, format string, args ...any) {
	libLogger.Load().Infof(ctx, format, args...)
}
func (forward) Warnf(ctx context.Context, format string, args ...any) {
	libLogger.Load().Warnf(ctx, format, args...)
}
func (forward) Errorf(ctx context.Context, format string, args ...any) {
	libLogger.Load().Errorf(ctx, format, args...)
}

const (
	fmtConnClosed = "connection to plugin %q closed"
	fmtClosing    = "closing plugin %s, failed to handle %s request: %v"
)

func setLogger(log *slog.Logger, t *tracker) {
	libLogger.Store(&logger{log: log, track: t})
	libLogOnce.Do(func() { nrilog.Set(forward{}) })
}

func (l *logger) watch(format string, args []any) {
	if len(args) == 0 {
		return
	}
	name, ok := args[0].(string)
	if !ok {
		return
	}
	switch format {
	case fmtConnClosed:
		l.track.disconnect(name, "connection closed")
	case fmtClosing:
		l.track.disconnect(name, fmt.Sprintf(format, args...))
	}
}

func (l *logger) Debugf(_ context.Context, format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}
func (l *logger) Infof(_ context.Context, format string, args ...any) {
	l.watch(format, args)
	l.log.Debug(fmt.Sprintf(format, args...))
}
func (l *logger) Warnf(_ context.Context, format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...))
}
func (l *logger) Errorf(_ context.Context, format string, args ...any) {
	l.watch(format, args)
	l.log.Error(fmt.Sprintf(format, args...))
}
