package image

import (
	"context"
	"errors"
	"net"
	"net/url"
	"syscall"

	"github.com/crivet/crivet/internal/errclass"
)

var (
	// ErrNotFound: no image matches the reference.
	ErrNotFound = errclass.New(errclass.NotFound, "image not found")
	// ErrInvalidReference: the reference cannot be parsed.
	ErrInvalidReference = errclass.New(errclass.InvalidArgument, "invalid image reference")
	// ErrRegistryUnavailable: the registry could not be reached at all.
	ErrRegistryUnavailable = errclass.New(errclass.Unavailable, "registry unavailable")
	// ErrInUse: a container still uses the image.
	ErrInUse = errclass.New(errclass.FailedPrecondition, "image in use")
	// ErrPullStalled: the registry sent nothing for the pull progress timeout.
	ErrPullStalled = errors.New("registry stalled")
	// ErrImageLimit: the image exceeds max_image_size or max_layers.
	ErrImageLimit = errors.New("image exceeds a configured limit")
	// ErrBadManifest: the registry served a manifest crivet cannot use.
	ErrBadManifest = errors.New("unusable manifest")
)

// unreachable reports whether err means the registry could not be reached
// (as opposed to answering with an error): connection refused or reset,
// DNS failure, timeouts on dial.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) && urlErr.Timeout() {
		return true
	}
	return false
}
