package lifecycle

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"testing"

	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func newLimits() *runtimeapi.LinuxContainerResources {
	return &runtimeapi.LinuxContainerResources{CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 256 << 20}
}

// created makes a container through the lifecycle and forgets the calls
// and events that took.
func (e *env) created(t *testing.T, name string) *sandbox.Container {
	t.Helper()
	if _, err := e.pods.Get("p1"); err != nil {
		e.readyPod("p1", "team-a")
	}
	c, err := e.m.CreateContainer(context.Background(), CreateRequest{PodID: "p1", Config: ctrConfig(name)})
	if err != nil {
		t.Fatal(err)
	}
	e.eventTypes()
	e.calls.mu.Lock()
	e.calls.log = nil
	e.calls.mu.Unlock()
	return c
}

// An update is checked, adjusted by plugins, applied by runc and then
// kept in the record, in that order.
func TestUpdateAppliesWhatPluginsAdjustAndRecordsIt(t *testing.T) {
	e := newEnv(t)
	c := e.created(t, "web")
	e.plugins.memLimit = 96 << 20
	res := newLimits()
	if err := e.m.UpdateContainer(context.Background(), c.ID, res); err != nil {
		t.Fatal(err)
	}
	wantLog(t, "steps", e.got(), "plugins.UpdateContainer "+c.ID, "rt.Update "+c.ID, "pods.UpdateContainer "+c.ID, "plugins.PostUpdateContainer "+c.ID)
	u := e.rt.updates[c.ID]
	if u == nil || *u.Memory.Limit != 96<<20 || *u.CPU.Quota != 50000 {
		t.Fatalf("runc got %+v", u)
	}
	if got := e.pods.containers[c.ID].Config.GetLinux().GetResources(); got != res {
		t.Fatalf("recorded %v, want the request's %v", got, res)
	}
}

// Each refusal happens before runc changes anything, and the record keeps
// its limits when runc or the record fails.
func TestUpdateRefusals(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	for _, c := range []struct {
		name   string
		setup  func(e *env)
		id     string
		res    *runtimeapi.LinuxContainerResources
		want   error
		runcUp bool
	}{
		{"missing container", nil, "gone", newLimits(), sandbox.ErrContainerNotFound, false},
		{"limits this host cannot apply", func(e *env) {
			if h, err := spec.CurrentHost(); err != nil || h.Hugetlb {
				t.Skip("this host has the hugetlb controller")
			}
		}, "", &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}}}, spec.ErrUnsupported, false},
		{"plugin refusal", func(e *env) { e.failOn("plugins.UpdateContainer", boom) }, "", newLimits(), boom, false},
		{"runc failure", func(e *env) { e.failOn("rt.Update", boom) }, "", newLimits(), boom, false},
		{"record failure", func(e *env) { e.failOn("pods.UpdateContainer", boom) }, "", newLimits(), boom, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			ctr := e.created(t, "web")
			if c.setup != nil {
				c.setup(e)
			}
			id := c.id
			if id == "" {
				id = ctr.ID
			}
			err := e.m.UpdateContainer(ctx, id, c.res)
			if !errors.Is(err, c.want) {
				t.Fatalf("update: %v, want %v", err, c.want)
			}
			if up := e.rt.updates[ctr.ID] != nil; up != c.runcUp {
				t.Errorf("runc updated: %v, want %v", up, c.runcUp)
			}
			if e.pods.containers[ctr.ID].Config.GetLinux().GetResources() != nil {
				t.Errorf("record changed by a failed update")
			}
			if slices.Contains(e.got(), "plugins.PostUpdateContainer "+ctr.ID) {
				t.Errorf("plugins told of a failed update")
			}
		})
	}
	// No Linux resources: nothing to do, but the container must exist.
	e := newEnv(t)
	ctr := e.created(t, "web")
	if err := e.m.UpdateContainer(ctx, ctr.ID, nil); err != nil || len(e.got()) != 0 {
		t.Fatalf("empty update: %v, calls %q", err, e.got())
	}
	if err := e.m.UpdateContainer(ctx, "gone", nil); !errors.Is(err, sandbox.ErrContainerNotFound) {
		t.Fatalf("empty update of a missing container: %v", err)
	}
}

// waitUntil yields until cond holds or done is closed; it reports cond.
// No timing: each side's progress is observed, not guessed.
func waitUntil(cond func() bool, done <-chan struct{}) bool {
	for !cond() {
		select {
		case <-done:
			return cond()
		default:
			runtime.Gosched()
		}
	}
	return true
}

// An update and a removal of one container never interleave. A removal
// that comes while runc applies an update waits for the update to be
// recorded; an update that comes during a removal waits for it and then
// finds the container gone: runc is not asked to update a container being
// removed, and the removed record is never brought back.
//
// The update of f07d157 (server: look up, runc update, AddContainer)
// fails both halves: the removal ran beside it, and its save re-added
// the removed record.
func TestUpdateAndRemoveNeverInterleave(t *testing.T) {
	ctx := context.Background()
	t.Run("removal during an update", func(t *testing.T) {
		e := newEnv(t)
		c := e.created(t, "web")
		release := make(chan struct{})
		e.calls.block = map[string]chan struct{}{"rt.Update": release}
		e.calls.entered = make(chan string, 1)
		updated := make(chan error, 1)
		go func() { updated <- e.m.UpdateContainer(ctx, c.ID, newLimits()) }()
		<-e.calls.entered // the update is inside runc
		removed := make(chan struct{})
		var rmErr error
		go func() { rmErr = e.m.RemoveContainer(ctx, c); close(removed) }()
		if !waitUntil(func() bool { return e.m.locks.Users(c.ID) == 2 }, removed) {
			t.Fatalf("the removal ran while runc applied an update: %q", e.got())
		}
		close(release)
		if err := <-updated; err != nil {
			t.Fatalf("update: %v", err)
		}
		<-removed
		if rmErr != nil {
			t.Fatalf("remove: %v", rmErr)
		}
		log := e.got()
		if i, j := slices.Index(log, "pods.UpdateContainer "+c.ID), slices.Index(log, "rt.Delete "+c.ID); i < 0 || j < i {
			t.Fatalf("the update's record came after the removal began: %q", log)
		}
		e.nothingLeft(t, c.ID)
	})
	t.Run("update during a removal", func(t *testing.T) {
		e := newEnv(t)
		c := e.created(t, "web")
		release := make(chan struct{})
		e.calls.block = map[string]chan struct{}{"rt.Delete": release}
		e.calls.entered = make(chan string, 1)
		removed := make(chan error, 1)
		go func() { removed <- e.m.RemoveContainer(ctx, c) }()
		<-e.calls.entered // the removal is inside runc delete
		updated := make(chan struct{})
		var upErr error
		go func() { upErr = e.m.UpdateContainer(ctx, c.ID, newLimits()); close(updated) }()
		if !waitUntil(func() bool { return e.m.locks.Users(c.ID) == 2 }, updated) {
			t.Fatalf("the update ran during a removal (%v): %q", upErr, e.got())
		}
		close(release)
		if err := <-removed; err != nil {
			t.Fatalf("remove: %v", err)
		}
		<-updated
		if !errors.Is(upErr, sandbox.ErrContainerNotFound) {
			t.Fatalf("update after the removal: %v, want not found", upErr)
		}
		if slices.Contains(e.got(), "rt.Update "+c.ID) {
			t.Fatalf("runc updated a container being removed: %q", e.got())
		}
		e.nothingLeft(t, c.ID)
	})
}
