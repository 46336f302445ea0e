package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/crivet/crivet/oci/runtime"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func stopPod(f *fixture, id string) func(context.Context) (any, error) {
	return func(ctx context.Context) (any, error) {
		return f.s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	}
}

func removePod(f *fixture, id string) func(context.Context) (any, error) {
	return func(ctx context.Context) (any, error) {
		return f.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	}
}

// CRI: stopping or removing a pod that is not there succeeds, and nothing
// of the lifecycle runs for it.
func TestStopAndRemovePodSandboxOfMissingIDSucceedAndTouchNothing(t *testing.T) {
	for name, rpc := range map[string]func(*fixture, string) func(context.Context) (any, error){
		"StopPodSandbox": stopPod, "RemovePodSandbox": removePod,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.addPod("other", "ns", nil)
			_, err := call(t, f.s, rpc(f, "gone"))
			wantCode(t, err, codes.OK)
			wantCalls(t, "lifecycle", f.lc.got())
		})
	}
}

func TestStopAndRemovePodSandboxActOnTheResolvedPod(t *testing.T) {
	f := newFixture(t)
	f.addPod("pod123", "ns", nil)
	f.addPod("zzz", "ns", nil)
	if _, err := call(t, f.s, stopPod(f, "pod1")); err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, f.s, removePod(f, "pod123")); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "lifecycle", f.lc.got(), "StopPod pod123", "RemovePod pod123")
}

func TestStopAndRemovePodSandboxErrorCodes(t *testing.T) {
	for _, c := range []struct {
		name  string
		id    string
		lcErr error
		code  codes.Code
	}{
		{"ambiguous prefix is InvalidArgument, not a no-op", "pod", nil, codes.InvalidArgument},
		{"lifecycle deadline keeps its code", "pod1", fmt.Errorf("stop pod: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"lifecycle runtime not running", "pod1", runtime.ErrNotRunning, codes.FailedPrecondition},
		{"lifecycle plain failure is Unknown", "pod1", errors.New("cni del failed"), codes.Unknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			for name, rpc := range map[string]func(*fixture, string) func(context.Context) (any, error){
				"stop": stopPod, "remove": removePod,
			} {
				t.Run(name, func(t *testing.T) {
					f := newFixture(t)
					f.addPod("pod1", "ns", nil)
					f.addPod("pod2", "ns", nil)
					f.lc.err = c.lcErr
					_, err := call(t, f.s, rpc(f, c.id))
					wantCode(t, err, c.code)
				})
			}
		})
	}
}
