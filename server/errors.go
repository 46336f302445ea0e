package server

import (
	"errors"
	"fmt"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/policy"
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
	var rej *policy.Rejection
	switch {
	case errors.As(err, &rej):
		return fmt.Errorf("%s: %s", crierrors.ErrSignatureValidationFailed, rej.Error())
	case errors.Is(err, image.ErrRegistryUnavailable):
		return fmt.Errorf("%s: %s", crierrors.ErrRegistryUnavailable, err.Error())
	case errors.Is(err, policy.ErrInvalidNamespace), errors.Is(err, image.ErrInvalidReference):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, image.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, image.ErrInUse):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return err
}
