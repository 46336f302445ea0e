package server

import (
	"context"
	"errors"
	"path"
	"syscall"

	"github.com/crivet/crivet/internal/reserve"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Space is the root file system's free-space reserve (*reserve.Reserve).
type Space interface {
	// Check refuses (reserve.ErrNoSpace) an operation that consumes space
	// while the disk is full.
	Check() error
	// Release gives the reserve back to the file system after a write
	// failed for want of space; false if it was not held.
	Release(reason string) bool
}

// consumesSpace are the CRI calls that fill the disk: new layers, new
// container layers, pod records and their directories. Everything else
// (lists, status, stop, remove) must keep working on a full disk, since
// it is how kubelet frees space.
var consumesSpace = map[string]bool{
	"PullImage":       true,
	"RunPodSandbox":   true,
	"CreateContainer": true,
}

// freesSpace are the calls kubelet makes to free space. Each is idempotent
// (CRI requires it, and kubelet retries them), so one that failed for want
// of space is run again once the reserve has made room, rather than left
// for kubelet's next sync to retry.
var freesSpace = map[string]bool{
	"StopContainer":    true,
	"RemoveContainer":  true,
	"StopPodSandbox":   true,
	"RemovePodSandbox": true,
	"RemoveImage":      true,
}

// spaceGuard refuses the calls that consume space while the disk is full,
// and releases the reserve when any call fails for want of space, so that
// stops and removals have room for their records (a removal that failed
// is run again at once). It runs
// inside unaryGuard, which gives its refusal the ResourceExhausted code.
func spaceGuard(space Space) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		method := path.Base(info.FullMethod)
		if consumesSpace[method] {
			if err := space.Check(); err != nil {
				return nil, err
			}
		}
		resp, err := handler(ctx, req)
		if outOfSpace(err) && space.Release(method+" failed: "+err.Error()) && freesSpace[method] {
			resp, err = handler(ctx, req)
		}
		return resp, err
	}
}

// outOfSpace: the call failed writing to a full file system. A handler
// that already mapped its error keeps only the code.
func outOfSpace(err error) bool {
	if err == nil || errors.Is(err, reserve.ErrNoSpace) {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) {
		return true
	}
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.ResourceExhausted
}
