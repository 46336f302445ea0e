package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func update(t *testing.T, f *fixture, req *runtimeapi.UpdateContainerResourcesRequest) error {
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.UpdateContainerResourcesResponse, error) {
		return f.s.UpdateContainerResources(ctx, req)
	})
	return err
}

func newLimits() *runtimeapi.LinuxContainerResources {
	return &runtimeapi.LinuxContainerResources{CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 256 << 20}
}

func TestUpdateContainerResourcesAppliesAndRecordsTheLimits(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("abc123", "p1", runtime.StateRunning, nil)
	if err := update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "abc", Linux: newLimits()}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "processes", f.rt.got(), "Update abc123")
	wantCalls(t, "pods", f.pods.got(), "UpdateContainer abc123")
	u := f.rt.updates[0]
	if u.CPU == nil || *u.CPU.Quota != 50000 || *u.CPU.Period != 100000 || u.Memory == nil || *u.Memory.Limit != 256<<20 {
		t.Fatalf("runtime got %+v", u)
	}
	// ContainerStatus now reports them.
	resp, err := containerStatus(t, f, "abc123", false)
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Status.Resources.GetLinux(); r.GetMemoryLimitInBytes() != 256<<20 || r.GetCpuQuota() != 50000 {
		t.Fatalf("status reports %v", r)
	}
}

func TestUpdateContainerResourcesWithoutLinuxChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("c1", "p1", runtime.StateRunning, nil)
	if err := update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "c1"}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "processes", f.rt.got())
	wantCalls(t, "pods", f.pods.got())
}

func TestUpdateContainerResourcesOfMissingIDIsNotFound(t *testing.T) {
	f := newFixture(t)
	err := update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "gone", Linux: newLimits()})
	wantCode(t, err, codes.NotFound)
	wantCalls(t, "processes", f.rt.got())
}

// A limit the runtime could not apply is neither recorded nor reported.
func TestUpdateContainerResourcesRuntimeFailureRecordsNothing(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("c1", "p1", runtime.StateRunning, nil)
	f.rt.updateErr = fmt.Errorf("runc update: %w", runtime.ErrNotRunning)
	err := update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "c1", Linux: newLimits()})
	wantCode(t, err, codes.FailedPrecondition)
	wantCalls(t, "pods", f.pods.got())
	if r := f.pods.containers[0].Config.GetLinux().GetResources(); r != nil {
		t.Fatalf("stored record changed to %v", r)
	}
}

// The record the pods service returns shares its config with the stored
// one (as sandbox.Manager's does): the handler must not write the new
// limits into the stored record behind the service's back, or a failed
// save leaves memory reporting limits that were never persisted (and
// concurrent readers race with the write).
func TestUpdateContainerResourcesFailedRecordLeavesTheStoredLimits(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	c := f.addContainer("c1", "p1", runtime.StateRunning, nil)
	old := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}
	c.Config.Linux = &runtimeapi.LinuxContainerConfig{Resources: old}
	f.pods.addErr = errors.New("record container c1: disk full")
	err := update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "c1", Linux: newLimits()})
	wantCode(t, err, codes.Unknown)
	if r := f.pods.containers[0].Config.GetLinux().GetResources(); r != old || r.MemoryLimitInBytes != 64<<20 {
		t.Fatalf("stored limits became %v, want the old ones", r)
	}
}

// A limit this host cannot apply has the code it has at CreateContainer
// (the interceptor's mapping of spec errors), not a blanket
// InvalidArgument.
func TestUpdateContainerResourcesUnsupportedOnThisHostIsUnimplemented(t *testing.T) {
	h, err := spec.CurrentHost()
	if err != nil {
		t.Fatal(err)
	}
	if h.Hugetlb {
		t.Skip("host has a hugetlb controller: a hugepage limit is supported")
	}
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("c1", "p1", runtime.StateRunning, nil)
	err = update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "c1", Linux: &runtimeapi.LinuxContainerResources{
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
	}})
	wantCode(t, err, codes.Unimplemented)
	wantCalls(t, "processes", f.rt.got())
}

func TestReopenContainerLogReopensTheResolvedRunningContainer(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("abc123", "p1", runtime.StateRunning, nil)
	if _, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ReopenContainerLogResponse, error) {
		return f.s.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: "abc"})
	}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "processes", f.rt.got(), "ReopenLog abc123")
}

// A container removed while runc applied the new limits stays removed: the
// update changes the stored record in place and never re-adds it.
func TestUpdateContainerResourcesRacingRemovalDoesNotResurrect(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("c1", "p1", runtime.StateRunning, nil)
	f.rt.onUpdate = func(id string) { f.pods.containers = nil } // RemoveContainer finished meanwhile
	err := update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "c1", Linux: newLimits()})
	wantCode(t, err, codes.NotFound)
	if len(f.pods.containers) != 0 {
		t.Fatalf("removed container came back: %+v", f.pods.containers[0])
	}
}

// resPlugins stands in for NRI plugins (lifecycle.Manager with package
// nri; the real path is test/e2e's TestNRIPluginAdjustsContainersAndSeesEveryStep).
type resPlugins struct {
	limit   int64
	err     error
	updated []string
}

func (p *resPlugins) AdjustResources(_ context.Context, c *sandbox.Container, res *specs.LinuxResources) (*specs.LinuxResources, error) {
	if p.err != nil {
		return nil, p.err
	}
	out := *res
	out.Memory = &specs.LinuxMemory{Limit: &p.limit}
	return &out, nil
}

func (p *resPlugins) ResourcesUpdated(_ context.Context, c *sandbox.Container) {
	p.updated = append(p.updated, c.ID)
}

func TestUpdateContainerResourcesAppliesWhatPluginsChanged(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("abc123", "p1", runtime.StateRunning, nil)
	plug := &resPlugins{limit: 96 << 20}
	f.s.resPlug = plug
	if err := update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "abc123", Linux: newLimits()}); err != nil {
		t.Fatal(err)
	}
	if u := f.rt.updates[0]; *u.Memory.Limit != 96<<20 || *u.CPU.Quota != 50000 {
		t.Errorf("runtime got %+v", u)
	}
	if len(plug.updated) != 1 {
		t.Errorf("plugins told of %v", plug.updated)
	}
	// A plugin's refusal fails the update before runc changes anything.
	plug.err = errors.New("plugin says no")
	if err := update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "abc123", Linux: newLimits()}); err == nil || len(f.rt.updates) != 1 {
		t.Errorf("refused update: %v, runtime updates %d", err, len(f.rt.updates))
	}
}
