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
	held     bool
	released []string
}

func (f *fakeSpace) Check() error {
	if f.full {
		return fmt.Errorf("%w: 0 bytes free", reserve.ErrNoSpace)
	}
	return nil
}

func (f *fakeSpace) Release(reason string) bool {
	f.released = append(f.released, reason)
	was := f.held
	f.held = false
	return was
}

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
// its handler returned the raw error or mapped it already; a removal is
// then run again at once, a pull is not.
func TestSpaceGuardReleasesOnENOSPC(t *testing.T) {
	enospc := &os.PathError{Op: "write", Path: "/root/overlay-containers/.tmp-containers.json", Err: syscall.ENOSPC}
	runs := 0
	failOnce := func(mapped bool) grpc.UnaryHandler {
		runs = 0
		return func(context.Context, any) (any, error) {
			runs++
			if runs > 1 {
				return struct{}{}, nil
			}
			err := fmt.Errorf("remove container c: %w", enospc)
			if mapped {
				return nil, toStatus(err)
			}
			return nil, err
		}
	}
	for _, mapped := range []bool{false, true} {
		space := &fakeSpace{held: true}
		if _, err := callGuarded(space, "RemoveContainer", failOnce(mapped)); err != nil || runs != 2 || len(space.released) != 1 {
			t.Fatalf("removal hitting ENOSPC (mapped %v): %v after %d runs, released %v; want released and run again", mapped, err, runs, space.released)
		}
	}

	space := &fakeSpace{held: true}
	_, err := callGuarded(space, "PullImage", failOnce(false))
	if status.Code(err) != codes.ResourceExhausted || runs != 1 || len(space.released) != 1 {
		t.Fatalf("pull hitting ENOSPC: %v after %d runs, released %v; want ResourceExhausted, not run again", err, runs, space.released)
	}
	// Nothing left to release: the removal fails as the disk makes it.
	_, err = callGuarded(space, "RemoveContainer", func(context.Context, any) (any, error) { runs++; return nil, enospc })
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("removal on a full disk with no reserve: %v", err)
	}
	released := len(space.released)
	_, _ = callGuarded(space, "StopContainer", func(context.Context, any) (any, error) { return nil, os.ErrPermission })
	if len(space.released) != released {
		t.Fatalf("another failure released the reserve: %v", space.released)
	}
}
