package spec

import "github.com/crivet/crivet/internal/errclass"

var (
	// ErrInvalid: the CRI request asks for something contradictory or
	// malformed (run_as_group without a user, an unknown capability, a
	// relative container path, ...). The server maps it to InvalidArgument.
	ErrInvalid = errclass.New(errclass.InvalidArgument, "invalid container config")
	// ErrUnsupported: the request is well formed but crivet or this host
	// cannot honour it (user namespaces, a capability crivet does not hold,
	// hugepage limits without a hugetlb controller, ...).
	ErrUnsupported = errclass.New(errclass.Unsupported, "not supported")
	// ErrUserNotFound: run_as_username, or a user or group name from the
	// image config, is not in the image's /etc/passwd or /etc/group. CRI
	// says the runtime MUST fail then.
	ErrUserNotFound = errclass.New(errclass.InvalidArgument, "user or group not found in image")
)
