package server

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/internal/errclass"
	"github.com/crivet/crivet/policy"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	crierrors "k8s.io/cri-api/pkg/errors"
)

// toStatus turns a domain error into what CRI clients understand. Domain
// packages declare their errors with a class (internal/errclass); this is
// the one place a class becomes a gRPC code, so a new sentinel is mapped
// by its declaration alone.
//
// kubelet's CRI client strips a gRPC status only when its code is Unknown
// and then matches the message prefix, so a signature rejection and an
// unreachable registry are plain errors (gRPC sends Unknown) whose
// messages start with the cri-api error text. A rejection keeps the
// library's reason verbatim and nothing before the prefix.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status (e.g. FailedPrecondition from this package)
	}
	switch {
	// Every signature-policy outcome has one shape: gRPC Unknown (a plain
	// error) whose text starts with the cri-api prefix, whatever else the
	// error holds.
	case errors.Is(err, errclass.PolicyRefusal):
		return fmt.Errorf("%s: %s", crierrors.ErrSignatureValidationFailed, refusalText(err))
	case errors.Is(err, image.ErrRegistryUnavailable):
		return fmt.Errorf("%s: %s", crierrors.ErrRegistryUnavailable, err.Error())
	// A full disk before the rest (a signature-policy outcome keeps its
	// one shape): whatever failed, freeing space is what fixes it.
	case errors.Is(err, errclass.ResourceExhausted), errors.Is(err, syscall.ENOSPC):
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	if code, ok := classCode(errclass.Of(err)); ok {
		return status.Error(code, err.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return err
}

// classCode is the gRPC code of an error class, false for the classes
// that have none here: PolicyRefusal and ResourceExhausted are shaped
// before, and None is the runtime's own failure (Unknown).
func classCode(c errclass.Class) (codes.Code, bool) {
	switch c {
	case errclass.NotFound:
		return codes.NotFound, true
	case errclass.AlreadyExists:
		return codes.AlreadyExists, true
	case errclass.FailedPrecondition:
		return codes.FailedPrecondition, true
	case errclass.InvalidArgument:
		return codes.InvalidArgument, true
	case errclass.Unavailable:
		return codes.Unavailable, true
	case errclass.Unsupported:
		return codes.Unimplemented, true
	}
	return codes.Unknown, false
}

// refusalText is what follows the SignatureValidationFailed prefix. The
// library's decision alone is its reason verbatim (what operators know
// from podman and CRI-O), without the steps that wrapped it; a refusal
// crivet made or an unusable policy file keeps its whole context.
func refusalText(err error) string {
	var (
		rej     *policy.Rejection
		fileErr *policy.FileError
	)
	if errors.As(err, &rej) && !errors.Is(err, policy.ErrRefused) && !errors.As(err, &fileErr) {
		return rej.Error()
	}
	return err.Error()
}
