package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// How an update is applied, and how it is ordered against a removal, is
// the lifecycle's (lifecycle's update tests); the server hands the request
// over and answers in CRI's shapes.

func update(t *testing.T, f *fixture, req *runtimeapi.UpdateContainerResourcesRequest) error {
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.UpdateContainerResourcesResponse, error) {
		return f.s.UpdateContainerResources(ctx, req)
	})
	return err
}

func TestUpdateContainerResourcesHandsTheRequestToTheLifecycle(t *testing.T) {
	f := newFixture(t)
	res := &runtimeapi.LinuxContainerResources{CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 256 << 20}
	if err := update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "abc", Linux: res}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "lifecycle", f.lc.got(), "UpdateContainer abc")
	if f.lc.updated[0] != res {
		t.Fatalf("lifecycle got %v", f.lc.updated[0])
	}
}

func TestUpdateContainerResourcesErrorCodes(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		code codes.Code
	}{
		{"missing container is NotFound", fmt.Errorf("update container x: %w", sandbox.ErrContainerNotFound), codes.NotFound},
		{"being removed is FailedPrecondition", fmt.Errorf("update container x: %w", lifecycle.ErrState), codes.FailedPrecondition},
		{"invalid limits are InvalidArgument", fmt.Errorf("update container x: %w", spec.ErrInvalid), codes.InvalidArgument},
		{"unsupported on this host is Unimplemented", fmt.Errorf("update container x: %w", spec.ErrUnsupported), codes.Unimplemented},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.lc.err = c.err
			wantCode(t, update(t, f, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "x"}), c.code)
		})
	}
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
