package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"testing"

	"github.com/crivet/crivet/internal/reserve"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type fakeSpace struct {
	full     bool
	released []string
}

func (f *fakeSpace) Check() error {
	if f.full {
		return fmt.Errorf("%w: 0 bytes free", reserve.ErrNoSpace)
	}
	return nil
}

func (f *fakeSpace) Release(reason string) { f.released = append(f.released, reason) }

// callGuarded runs handler behind both interceptors, as ServerOptions chains them.
func callGuarded(space Space, method string, handler grpc.UnaryHandler) (bool, error) {
	ran := false
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/" + method}
	h := func(ctx context.Context, req any) (any, error) { ran = true; return handler(ctx, req) }
	_, err := unaryGuard(slog.Default(), nil)(context.Background(), nil, info, func(ctx context.Context, req any) (any, error) {
		return spaceGuard(space)(ctx, req, info, h)
	})
	return ran, err
}

func served(context.Context, any) (any, error) { return struct{}{}, nil }

// On a full disk the calls that consume space are refused before they
// start, with ResourceExhausted; the ones that list, stop and remove run.
func TestSpaceGuardRefusesOnlyWhatConsumesSpace(t *testing.T) {
	space := &fakeSpace{full: true}
	for _, m := range []string{"PullImage", "RunPodSandbox", "CreateContainer"} {
		ran, err := callGuarded(space, m, served)
		if ran || status.Code(err) != codes.ResourceExhausted {
			t.Errorf("%s on a full disk: ran %v, %v; want refused with ResourceExhausted", m, ran, err)
		}
	}
	for _, m := range []string{"ListContainers", "ListPodSandbox", "ImageStatus", "Status", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox", "RemoveImage"} {
		if ran, err := callGuarded(space, m, served); !ran || err != nil {
			t.Errorf("%s on a full disk: ran %v, %v; want it served", m, ran, err)
		}
	}
	if len(space.released) != 0 {
		t.Fatalf("refusals released the reserve: %v", space.released)
	}
	space.full = false
	if ran, err := callGuarded(space, "PullImage", served); !ran || err != nil {
		t.Fatalf("pull once space returned: ran %v, %v", ran, err)
	}
}

// A call that fails writing to a full disk releases the reserve, whether
// its handler returned the raw error or mapped it already.
func TestSpaceGuardReleasesOnENOSPC(t *testing.T) {
	space := &fakeSpace{}
	enospc := &os.PathError{Op: "write", Path: "/root/overlay-containers/.tmp-containers.json", Err: syscall.ENOSPC}
	_, err := callGuarded(space, "RemoveContainer", func(context.Context, any) (any, error) {
		return nil, fmt.Errorf("remove container c: %w", enospc)
	})
	if status.Code(err) != codes.ResourceExhausted || len(space.released) != 1 {
		t.Fatalf("ENOSPC: %v, released %v", err, space.released)
	}
	_, err = callGuarded(space, "StopContainer", func(context.Context, any) (any, error) {
		return nil, toStatus(fmt.Errorf("stop container c: %w", enospc))
	})
	if status.Code(err) != codes.ResourceExhausted || len(space.released) != 2 {
		t.Fatalf("mapped ENOSPC: %v, released %v", err, space.released)
	}
	_, _ = callGuarded(space, "StopContainer", func(context.Context, any) (any, error) { return nil, os.ErrPermission })
	if len(space.released) != 2 {
		t.Fatalf("another failure released the reserve: %v", space.released)
	}
}
