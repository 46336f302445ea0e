package metrics

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// countingRuntime answers from states and counts the questions per
// container; a container it does not know is an error.
type countingRuntime struct {
	mu     sync.Mutex
	states map[string]runtime.State
	calls  map[string]int
}

func (r *countingRuntime) ContainerState(_ context.Context, id string) (runtime.Status, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[id]++
	st, ok := r.states[id]
	if !ok {
		return runtime.Status{}, errors.New("no such container")
	}
	return runtime.Status{State: st}, nil
}

// lifecycleStates is lifecycle.Manager's ContainerState over a real
// runtime: the rule the daemon wires in.
type lifecycleStates struct{ rt *runtime.Runtime }

func (l lifecycleStates) ContainerState(ctx context.Context, id string) (runtime.Status, error) {
	return lifecycle.StateOf(l.rt.Status(ctx, id))
}

// gatherContainers scrapes reg and returns crivet_containers by state.
func gatherContainers(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "crivet_containers" {
			continue
		}
		for _, m := range f.GetMetric() {
			out[label(m, "state")] = m.GetGauge().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// A clock the test moves: no assertion depends on how fast scrapes run.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// Unknown and failed statuses (the ones the runtime asks runc for each
// time) are asked once per unsettledTTL, however many scrapes; the states
// the runtime answers from its cache are asked at every scrape, so they
// are never stale.
func TestScrapesAskTheRuntimeOnceForUnsettledContainers(t *testing.T) {
	const scrapes = 20
	rt := &countingRuntime{calls: map[string]int{}, states: map[string]runtime.State{
		"run1": runtime.StateRunning, "run2": runtime.StateRunning, "unk1": runtime.StateUnknown, "unk2": runtime.StateUnknown,
	}}
	ctrs := []*sandbox.Container{{ID: "run1"}, {ID: "run2"}, {ID: "unk1"}, {ID: "unk2"}, {ID: "err1"}}
	clk := &clock{t: time.Unix(1000, 0)}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newInventoryCollector(Inventory{Pods: pods{ctrs: ctrs}, States: rt}, clk.now))
	for range scrapes {
		got := gatherContainers(t, reg)
		if got["running"] != 2 || got["unknown"] != 3 {
			t.Fatalf("containers %v, want 2 running and 3 unknown", got)
		}
	}
	for id, want := range map[string]int{"run1": scrapes, "run2": scrapes, "unk1": 1, "unk2": 1, "err1": 1} {
		if rt.calls[id] != want {
			t.Errorf("%s asked %d times in %d scrapes, want %d", id, rt.calls[id], scrapes, want)
		}
	}

	// Past the TTL it is asked again, and a changed answer shows.
	rt.mu.Lock()
	rt.states["unk1"] = runtime.StateExited
	rt.mu.Unlock()
	clk.t = clk.t.Add(unsettledTTL)
	if got := gatherContainers(t, reg); got["exited"] != 1 || got["unknown"] != 2 {
		t.Fatalf("after the TTL: containers %v, want 1 exited and 2 unknown", got)
	}
	if rt.calls["unk1"] != 2 || rt.calls["unk2"] != 2 {
		t.Errorf("after the TTL: unk1 asked %d times, unk2 %d, want 2 each", rt.calls["unk1"], rt.calls["unk2"])
	}
}

// The real runtime, with a runc that counts its runs and knows no
// container (as after a crash that lost runc's state): N scrapes of M
// containers run it M times, not N*M.
func TestScrapesDoNotRunRuncPerContainerPerScrape(t *testing.T) {
	const containers, scrapes = 5, 10
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	runc := filepath.Join(dir, "runc")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\necho '{\"level\":\"error\",\"msg\":\"container does not exist\"}' >&2\nexit 1\n", count)
	if err := os.WriteFile(runc, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "containers")
	rt, err := runtime.New(runtime.Config{Runc: runc, Root: filepath.Join(dir, "runc-root"), StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	var ctrs []*sandbox.Container
	for i := range containers {
		id := fmt.Sprintf("c%d", i)
		// A state directory without monitor or exit record: only runc can say.
		if err := os.MkdirAll(filepath.Join(stateDir, id), 0o700); err != nil {
			t.Fatal(err)
		}
		ctrs = append(ctrs, &sandbox.Container{ID: id})
	}
	clk := &clock{t: time.Unix(1000, 0)}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newInventoryCollector(Inventory{Pods: pods{ctrs: ctrs}, States: lifecycleStates{rt}}, clk.now))
	// Only state queries count: the runtime also asks this runc for its
	// version and features once, when it starts.
	runs := func() int {
		b, err := os.ReadFile(count)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "state ") {
				n++
			}
		}
		return n
	}
	for range scrapes {
		if got := gatherContainers(t, reg); got["unknown"] != containers {
			t.Fatalf("containers %v, want %d unknown", got, containers)
		}
	}
	if n := runs(); n != containers {
		b, _ := os.ReadFile(count)
		t.Fatalf("runc state ran %d times for %d scrapes of %d containers, want %d (once each); runs:\n%s", n, scrapes, containers, containers, b)
	}
	b, _ := os.ReadFile(count)
	if !strings.Contains(string(b), "state c0") {
		t.Fatalf("runc runs %q: want runc state", b)
	}
}

type droppedEvents uint64

func (d droppedEvents) DroppedEvents() uint64 { return uint64(d) }

// The events slow subscribers lost are a counter an operator can alert on.
func TestDroppedContainerEventsAreExported(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newInventoryCollector(Inventory{Events: droppedEvents(7)}, time.Now))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "crivet_container_events_dropped_total" {
			if v := f.GetMetric()[0].GetCounter().GetValue(); v != 7 {
				t.Fatalf("crivet_container_events_dropped_total = %v, want 7", v)
			}
			return
		}
	}
	t.Fatal("crivet_container_events_dropped_total not exported")
}
