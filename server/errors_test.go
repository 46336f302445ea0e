package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/internal/errclass"
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
)

// Every refusal that is a signature-policy outcome reaches kubelet as gRPC
// Unknown with the SignatureValidationFailed prefix first (cri-client strips
// only Unknown statuses, then kubelet matches the prefix); every other
// failure keeps its own precise code.
func TestErrorShapes(t *testing.T) {
	dir := t.TempDir()
	malformed := filepath.Join(dir, "team.json")
	if err := os.WriteFile(malformed, []byte(`{"default":[{"type":"nonsense"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, fileErr := policy.NewStore(filepath.Join(dir, "global.json"), dir).ForNamespace("team")
	_, missingGlobal := policy.NewStore(filepath.Join(dir, "absent.json"), "").Global()
	_, badNS := policy.NewStore(filepath.Join(dir, "global.json"), dir).ForNamespace("../etc")
	rej := &policy.Rejection{Reason: errors.New("A signature was required, but no signature exists")}
	const sig = "SignatureValidationFailed: "

	for _, c := range []struct {
		name   string
		err    error
		code   codes.Code
		prefix string
		has    string
	}{
		{"library rejection at pull", fmt.Errorf("pull reg/x: %w", rej), codes.Unknown, sig + "Source image rejected: A signature was required", ""},
		{"library rejection at create", fmt.Errorf("create container c: %w", rej), codes.Unknown, sig + "Source image rejected: ", ""},
		{"malformed namespace policy file", fmt.Errorf("create container c: %w", fileErr), codes.Unknown, sig + "create container c: ", malformed},
		{"missing global policy file", fmt.Errorf("pull x: %w", missingGlobal), codes.Unknown, sig + "pull x: policy file ", "absent.json"},
		{"reference naming another image", fmt.Errorf("%w: user_specified_image %q names image sha256:a, not the image being created (sha256:b)", policy.ErrRefused, "p"), codes.Unknown, sig + "refused by signature policy: ", "sha256:a"},
		{"nothing recorded to verify", fmt.Errorf("%w: image x cannot be verified as y: no verified manifest recorded", policy.ErrRefused), codes.Unknown, sig, "no verified manifest recorded"},
		{"mixed outcomes", fmt.Errorf("%w: none admitted: %w", policy.ErrRefused, errors.Join(rej, errors.New("io"))), codes.Unknown, sig + "refused by signature policy", "Source image rejected"},
		{"registry unreachable", fmt.Errorf("pull x: %w: dial", image.ErrRegistryUnavailable), codes.Unknown, "RegistryUnavailable: ", ""},
		{"path-trick namespace", badNS, codes.InvalidArgument, "", "invalid namespace"},
		{"bad reference", fmt.Errorf("pull: %w", image.ErrInvalidReference), codes.InvalidArgument, "", ""},
		{"ambiguous image ID", image.ErrAmbiguous, codes.InvalidArgument, "", ""},
		{"image not found", image.ErrNotFound, codes.NotFound, "", ""},
		{"unknown CDI device", fmt.Errorf("create container c: %w: vendor.test/gpu=9 (not in any CDI spec file in /etc/cdi)", cdi.ErrUnknownDevice), codes.InvalidArgument, "", "vendor.test/gpu=9"},
		{"unqualified CDI device", fmt.Errorf("create container c: %w: cdi_devices: %q", cdi.ErrInvalidName, "gpu0"), codes.InvalidArgument, "", "gpu0"},
		{"CDI disabled", fmt.Errorf("create container c: %w", cdi.ErrDisabled), codes.InvalidArgument, "", "cdi_spec_dirs"},
		{"image in use", image.ErrInUse, codes.FailedPrecondition, "", ""},
		{"pod not found", sandbox.ErrNotFound, codes.NotFound, "", ""},
		{"container not found", sandbox.ErrContainerNotFound, codes.NotFound, "", ""},
		{"pod name reserved", sandbox.ErrNameReserved, codes.AlreadyExists, "", ""},
		{"container name reserved", fmt.Errorf("create container: container a_0: %w by x", sandbox.ErrContainerNameReserved), codes.AlreadyExists, "", "name is reserved"},
		{"invalid spec input", spec.ErrInvalid, codes.InvalidArgument, "", ""},
		{"unsupported spec", spec.ErrUnsupported, codes.Unimplemented, "", ""},
		{"not running", runtime.ErrNotRunning, codes.FailedPrecondition, "", ""},
		{"wrong container state", fmt.Errorf("update container c: container is exited: %w", lifecycle.ErrState), codes.FailedPrecondition, "update container c: ", "wrong container state"},
		{"checkpoint of another image", fmt.Errorf("restore c: %w", checkpoint.ErrOtherImage), codes.FailedPrecondition, "", ""},
		{"invalid checkpoint archive", fmt.Errorf("restore c: %w: ../x", checkpoint.ErrInvalid), codes.InvalidArgument, "", "../x"},
		{"user not in image", fmt.Errorf("create container c: %w: app", spec.ErrUserNotFound), codes.InvalidArgument, "", ""},
		{"ambiguous pod ID", sandbox.ErrAmbiguous, codes.InvalidArgument, "", ""},
		{"runc: no such container", fmt.Errorf("kill c: %w", runtime.ErrNotFound), codes.NotFound, "", ""},
		{"runc: container exists", fmt.Errorf("create c: %w", runtime.ErrAlreadyExists), codes.AlreadyExists, "", ""},
		{"runc: invalid argument", fmt.Errorf("update c: %w", runtime.ErrInvalidArgument), codes.InvalidArgument, "", ""},
		{"exec timed out", fmt.Errorf("exec c: %w after 1s: %w", runtime.ErrTimeout, context.DeadlineExceeded), codes.DeadlineExceeded, "", "timed out"},
		{"runtime failure", fmt.Errorf("start c: %w", errors.New("runc: exit status 1")), codes.Unknown, "start c: ", ""},
		{"disk full, refused", fmt.Errorf("pull x: %w: 0 bytes free", reserve.ErrNoSpace), codes.ResourceExhausted, "pull x: ", "no space left"},
		{"disk full, write failed", fmt.Errorf("remove container c: %w", &os.PathError{Op: "write", Path: "/r/x", Err: syscall.ENOSPC}), codes.ResourceExhausted, "remove container c: ", "no space left on device"},
		{"status passes through", status.Error(codes.ResourceExhausted, "x"), codes.ResourceExhausted, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("case has no error")
			}
			got := toStatus(c.err)
			st, _ := status.FromError(got)
			if st.Code() != c.code {
				t.Fatalf("code %v, want %v (%v)", st.Code(), c.code, got)
			}
			if !strings.HasPrefix(st.Message(), c.prefix) {
				t.Fatalf("message %q does not start with %q", st.Message(), c.prefix)
			}
			if !strings.Contains(st.Message(), c.has) {
				t.Fatalf("message %q does not contain %q", st.Message(), c.has)
			}
			// Mapping twice (a handler and the interceptor) changes nothing.
			again, _ := status.FromError(toStatus(got))
			if again.Code() != st.Code() || again.Message() != st.Message() {
				t.Fatalf("second mapping changed %v to %v", st, again)
			}
		})
	}
}

// Every class has one answer, and the server learns it from the class: a
// sentinel declared here, whose name toStatus never sees, gets the code of
// its class, wrapped or joined however deep.
func TestClassCodes(t *testing.T) {
	const sig = "SignatureValidationFailed: "
	for _, c := range []struct {
		class  errclass.Class
		code   codes.Code
		prefix string
	}{
		{errclass.None, codes.Unknown, "something failed"},
		{errclass.NotFound, codes.NotFound, "something failed"},
		{errclass.AlreadyExists, codes.AlreadyExists, "something failed"},
		{errclass.FailedPrecondition, codes.FailedPrecondition, "something failed"},
		{errclass.InvalidArgument, codes.InvalidArgument, "something failed"},
		{errclass.Unavailable, codes.Unavailable, "something failed"},
		{errclass.Unsupported, codes.Unimplemented, "something failed"},
		{errclass.ResourceExhausted, codes.ResourceExhausted, "something failed"},
		{errclass.PolicyRefusal, codes.Unknown, sig + "something failed"},
	} {
		errNew := errclass.New(c.class, "something failed")
		for _, e := range []struct {
			name string
			err  error
		}{
			{"bare", errNew},
			{"wrapped", fmt.Errorf("step a: %w", fmt.Errorf("step b: %w", errNew))},
			{"joined", errors.Join(errors.New("cleanup: busy"), fmt.Errorf("step b: %w", errNew))},
		} {
			err := e.err
			t.Run(c.class.String()+"/"+e.name, func(t *testing.T) {
				st, _ := status.FromError(toStatus(err))
				if st.Code() != c.code {
					t.Fatalf("code %v, want %v", st.Code(), c.code)
				}
				want := err.Error()
				if c.class == errclass.PolicyRefusal {
					want = sig + want
				}
				if st.Message() != want {
					t.Fatalf("message %q, want %q", st.Message(), want)
				}
			})
		}
	}
}

// Each domain package says what its errors are; the wrong-state errors of
// three packages are one class.
func TestDomainSentinelClasses(t *testing.T) {
	for _, c := range []struct {
		err  error
		want errclass.Class
	}{
		{lifecycle.ErrState, errclass.FailedPrecondition},
		{runtime.ErrNotRunning, errclass.FailedPrecondition},
		{image.ErrInUse, errclass.FailedPrecondition},
		{checkpoint.ErrOtherImage, errclass.FailedPrecondition},
		{image.ErrRegistryUnavailable, errclass.Unavailable},
		{reserve.ErrNoSpace, errclass.ResourceExhausted},
		{policy.ErrRefused, errclass.PolicyRefusal},
		{&policy.Rejection{Reason: errors.New("no")}, errclass.PolicyRefusal},
		{&policy.FileError{Path: "/p.json", Err: errors.New("bad json")}, errclass.PolicyRefusal},
		{spec.ErrUnsupported, errclass.Unsupported},
	} {
		wrapped := fmt.Errorf("op: %w", c.err)
		if got := errclass.Of(wrapped); got != c.want {
			t.Errorf("%v: class %v, want %v", c.err, got, c.want)
		}
		if !errors.Is(wrapped, c.want) || !errors.Is(wrapped, c.err) {
			t.Errorf("%v: errors.Is does not match both the error and its class", c.err)
		}
	}
}
