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
	// failed for want of space.
	Release(reason string)
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

// spaceGuard refuses the calls that consume space while the disk is full,
// and releases the reserve when any call fails for want of space, so that
// the stops and removals that follow have room for their records. It runs
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
		if outOfSpace(err) {
			space.Release(method + " failed: " + err.Error())
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
