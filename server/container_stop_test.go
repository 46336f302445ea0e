package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/runtime"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI: stopping or removing a container that is not there succeeds, and
// nothing of the lifecycle runs for it.
func TestStopAndRemoveContainerOfMissingIDSucceedAndTouchNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		rpc  func(s *criServer, ctx context.Context) error
	}{
		{"StopContainer", func(s *criServer, ctx context.Context) error {
			_, err := s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: "gone", Timeout: 10})
			return err
		}},
		{"RemoveContainer", func(s *criServer, ctx context.Context) error {
			_, err := s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: "gone"})
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.addPod("p1", "ns", nil)
			f.addContainer("other", "p1", runtime.StateRunning, nil)
			_, err := call(t, f.s, func(ctx context.Context) (any, error) { return nil, c.rpc(f.s, ctx) })
			wantCode(t, err, codes.OK)
			wantCalls(t, "lifecycle", f.lc.got())
		})
	}
}

func TestStopContainerStopsTheResolvedContainerWithTimeoutInSeconds(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("abc123", "p1", runtime.StateRunning, nil)
	if _, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.StopContainerResponse, error) {
		return f.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: "abc", Timeout: 7})
	}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "lifecycle", f.lc.got(), "StopContainer abc123")
	if len(f.lc.stopTimeouts) != 1 || f.lc.stopTimeouts[0] != 7*time.Second {
		t.Fatalf("stop timeouts %v, want [7s]", f.lc.stopTimeouts)
	}
}

func TestRemoveContainerRemovesTheResolvedContainer(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("abc123", "p1", runtime.StateExited, nil)
	if _, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.RemoveContainerResponse, error) {
		return f.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: "abc123"})
	}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "lifecycle", f.lc.got(), "RemoveContainer abc123")
}

// An ambiguous prefix is the client's mistake, not a missing container:
// it must not be swallowed as a successful no-op.
func TestStopAndRemoveContainerAmbiguousPrefixIsInvalidArgument(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("abc1", "p1", runtime.StateRunning, nil)
	f.addContainer("abc2", "p1", runtime.StateRunning, nil)
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.StopContainerResponse, error) {
		return f.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: "abc"})
	})
	wantCode(t, err, codes.InvalidArgument)
	_, err = call(t, f.s, func(ctx context.Context) (*runtimeapi.RemoveContainerResponse, error) {
		return f.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: "abc"})
	})
	wantCode(t, err, codes.InvalidArgument)
	wantCalls(t, "lifecycle", f.lc.got())
}

func TestStopAndRemoveContainerLifecycleErrorsKeepTheirCode(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		code codes.Code
	}{
		{"deadline", fmt.Errorf("stop: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"plain", errors.New("runc exploded"), codes.Unknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.addPod("p1", "ns", nil)
			f.addContainer("abc1", "p1", runtime.StateRunning, nil)
			f.lc.err = c.err
			_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.StopContainerResponse, error) {
				return f.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: "abc1"})
			})
			wantCode(t, err, c.code)
			_, err = call(t, f.s, func(ctx context.Context) (*runtimeapi.RemoveContainerResponse, error) {
				return f.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: "abc1"})
			})
			wantCode(t, err, c.code)
		})
	}
}
