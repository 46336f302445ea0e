package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/oci/runtime"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestStartContainerStartsTheResolvedContainer(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("abc123", "p1", runtime.StateCreated, nil)
	if _, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.StartContainerResponse, error) {
		return f.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: "abc"})
	}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "lifecycle", f.lc.got(), "StartContainer abc123")
}

func TestStartContainerErrorCodes(t *testing.T) {
	for _, c := range []struct {
		name  string
		id    string
		lcErr error
		code  codes.Code
		calls []string
	}{
		{"missing container is NotFound", "gone", nil, codes.NotFound, nil},
		{"ambiguous prefix is InvalidArgument", "abc", nil, codes.InvalidArgument, nil},
		{"wrong state is FailedPrecondition", "abc1", fmt.Errorf("start container abc1: exited: %w", lifecycle.ErrState), codes.FailedPrecondition, []string{"StartContainer abc1"}},
		{"runtime not running is FailedPrecondition", "abc1", fmt.Errorf("start: %w", runtime.ErrNotRunning), codes.FailedPrecondition, []string{"StartContainer abc1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.addPod("p1", "ns", nil)
			f.addContainer("abc1", "p1", runtime.StateCreated, nil)
			f.addContainer("abc2", "p1", runtime.StateCreated, nil)
			f.lc.err = c.lcErr
			_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.StartContainerResponse, error) {
				return f.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.id})
			})
			wantCode(t, err, c.code)
			wantCalls(t, "lifecycle", f.lc.got(), c.calls...)
		})
	}
}
