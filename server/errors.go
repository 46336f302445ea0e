package server

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/internal/reserve"
	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/oci/cdi"
	"github.com/crivet/crivet/oci/checkpoint"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	crierrors "k8s.io/cri-api/pkg/errors"
)

// toStatus turns a domain error into what CRI clients understand.
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
	var (
		rej     *policy.Rejection
		fileErr *policy.FileError
	)
	switch {
	// Every signature-policy outcome has one shape: gRPC Unknown (a plain
	// error) whose text starts with the cri-api prefix. A refusal that is
	// more than the library's decision keeps its whole context.
	case errors.Is(err, policy.ErrRefused), errors.As(err, &fileErr):
		return fmt.Errorf("%s: %s", crierrors.ErrSignatureValidationFailed, err.Error())
	case errors.As(err, &rej):
		return fmt.Errorf("%s: %s", crierrors.ErrSignatureValidationFailed, rej.Error())
	case errors.Is(err, image.ErrRegistryUnavailable):
		return fmt.Errorf("%s: %s", crierrors.ErrRegistryUnavailable, err.Error())
	// A full disk before the rest (a signature-policy outcome keeps its
	// one shape): whatever failed, freeing space is what fixes it.
	case errors.Is(err, reserve.ErrNoSpace), errors.Is(err, syscall.ENOSPC):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, policy.ErrInvalidNamespace), errors.Is(err, image.ErrInvalidReference), errors.Is(err, spec.ErrInvalid), errors.Is(err, spec.ErrUserNotFound),
		errors.Is(err, cdi.ErrUnknownDevice), errors.Is(err, cdi.ErrInvalidName), errors.Is(err, cdi.ErrDisabled),
		errors.Is(err, checkpoint.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, checkpoint.ErrOtherImage):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, spec.ErrUnsupported):
		return status.Error(codes.Unimplemented, err.Error())
	case errors.Is(err, image.ErrNotFound), errors.Is(err, sandbox.ErrNotFound), errors.Is(err, sandbox.ErrContainerNotFound), errors.Is(err, runtime.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, sandbox.ErrNameReserved), errors.Is(err, sandbox.ErrContainerNameReserved):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, sandbox.ErrAmbiguous), errors.Is(err, image.ErrAmbiguous):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, runtime.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, runtime.ErrNotRunning), errors.Is(err, lifecycle.ErrState):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, runtime.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, image.ErrInUse):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return err
}
