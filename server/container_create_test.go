package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// What a create admits and makes is the lifecycle's (lifecycle's
// admission and create tests); the server checks the request's shape,
// hands it over untouched, and answers the lifecycle's errors in CRI's
// shapes.

func createFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.addPod("pod1", "team-a", nil)
	return f
}

func createReq(name string, mounts ...*runtimeapi.Mount) *runtimeapi.CreateContainerRequest {
	return &runtimeapi.CreateContainerRequest{
		PodSandboxId: "pod1",
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: "sha256:app", UserSpecifiedImage: "reg/app:1"},
			Mounts:   mounts,
		},
		// The client's word about the pod: must be ignored.
		SandboxConfig: podConfig("pod-pod1", "kube-system", nil),
	}
}

func create(t *testing.T, f *fixture, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	return call(t, f.s, func(ctx context.Context) (*runtimeapi.CreateContainerResponse, error) {
		return f.s.CreateContainer(ctx, req)
	})
}

func TestCreateContainerWithoutMetadataNameIsInvalidArgumentAndTouchesNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		req  *runtimeapi.CreateContainerRequest
	}{
		{"no config", &runtimeapi.CreateContainerRequest{PodSandboxId: "pod1"}},
		{"no metadata", &runtimeapi.CreateContainerRequest{PodSandboxId: "pod1", Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: "sha256:app"}}}},
		{"empty name", createReq("")},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := createFixture(t)
			_, err := create(t, f, c.req)
			wantCode(t, err, codes.InvalidArgument)
			wantCalls(t, "images", f.img.got())
			wantCalls(t, "lifecycle", f.lc.got())
		})
	}
}

// The lifecycle gets the pod's ID and the config as they came (never the
// request's SandboxConfig), and the client the lifecycle's container ID.
func TestCreateContainerHandsTheRequestToTheLifecycle(t *testing.T) {
	f := createFixture(t)
	req := createReq("web", &runtimeapi.Mount{ContainerPath: "/v", Image: &runtimeapi.ImageSpec{Image: "reg/v:1"}})
	resp, err := create(t, f, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContainerId != "ctr-new" {
		t.Fatalf("id %q, want the lifecycle's", resp.ContainerId)
	}
	wantCalls(t, "lifecycle", f.lc.got(), "CreateContainer pod1")
	if got := f.lc.created[0]; got.PodID != "pod1" || got.Config != req.Config {
		t.Fatalf("lifecycle got pod %q config %v", got.PodID, got.Config)
	}
	wantCalls(t, "images", f.img.got())
}

func TestCreateContainerErrorCodes(t *testing.T) {
	rej := &policy.Rejection{Reason: errors.New("A signature was required, but no signature exists")}
	for _, c := range []struct {
		name   string
		err    error
		code   codes.Code
		prefix string
	}{
		{"missing pod is NotFound", fmt.Errorf("create container: %q: %w", "gone", sandbox.ErrNotFound), codes.NotFound, ""},
		{"ambiguous pod prefix is InvalidArgument", fmt.Errorf("create container: %w", sandbox.ErrAmbiguous), codes.InvalidArgument, ""},
		{"missing image is NotFound", fmt.Errorf("create container web: image %q: %w", "reg/none:1", image.ErrNotFound), codes.NotFound, ""},
		{"invalid image reference is InvalidArgument", fmt.Errorf("create container web: %w", image.ErrInvalidReference), codes.InvalidArgument, ""},
		{"invalid namespace is InvalidArgument", fmt.Errorf("create container web: %w", policy.ErrInvalidNamespace), codes.InvalidArgument, ""},
		{"reserved name is AlreadyExists", fmt.Errorf("create container: container web_0: %w by x", sandbox.ErrContainerNameReserved), codes.AlreadyExists, ""},
		{"pod not ready is FailedPrecondition", fmt.Errorf("create container: pod sandbox pod1 is not ready: %w", lifecycle.ErrState), codes.FailedPrecondition, ""},
		{"rejection is SignatureValidationFailed", fmt.Errorf("create container web: %w", rej), codes.Unknown, "SignatureValidationFailed: "},
		{"refusal is SignatureValidationFailed", fmt.Errorf("create container web: %w: no verified manifest recorded", policy.ErrRefused), codes.Unknown, "SignatureValidationFailed: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := createFixture(t)
			f.lc.err = c.err
			_, err := create(t, f, createReq("web"))
			wantCode(t, err, c.code)
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, c.prefix) {
				t.Fatalf("message %q lacks the prefix %q", msg, c.prefix)
			}
		})
	}
}
