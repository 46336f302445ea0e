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

var (
	appImage = &image.Image{ID: "sha256:app", RepoTags: []string{"reg/app:1"}}
	volA     = &image.Image{ID: "sha256:vola", RepoTags: []string{"reg/a:1"}}
	volB     = &image.Image{ID: "sha256:volb", RepoTags: []string{"reg/b:2"}}
)

func createFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.addPod("pod1", "team-a", nil)
	f.img.add(appImage, volA, volB)
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

func imageMount(path, ref, userRef string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: path, Image: &runtimeapi.ImageSpec{Image: ref, UserSpecifiedImage: userRef}}
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

// The namespace whose policy decides is the one crivet stored at
// RunPodSandbox, never the request's SandboxConfig.
func TestCreateContainerAdmitsUnderTheStoredPodsNamespace(t *testing.T) {
	f := createFixture(t)
	resp, err := create(t, f, createReq("web"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContainerId != "ctr-new" {
		t.Fatalf("id %q, want the lifecycle's", resp.ContainerId)
	}
	if len(f.img.admitted) != 1 {
		t.Fatalf("%d admissions, want 1", len(f.img.admitted))
	}
	a := f.img.admitted[0]
	if a.Namespace != "team-a" || a.Pod != "pod1" || a.Container != "web" || a.UserRef != "reg/app:1" || a.Image.ID != "sha256:app" {
		t.Fatalf("admitted %+v, want namespace team-a (stored), pod pod1, container web, user ref reg/app:1", a)
	}
	if len(f.lc.created) != 1 {
		t.Fatalf("lifecycle got %d creates", len(f.lc.created))
	}
	cr := f.lc.created[0]
	if cr.Pod.ID != "pod1" || cr.Pod.Namespace() != "team-a" || cr.Image != appImage || cr.Identity != "reg/app:1" || len(cr.Volumes) != 0 {
		t.Fatalf("lifecycle request pod %s/%s image %v identity %q volumes %v", cr.Pod.ID, cr.Pod.Namespace(), cr.Image, cr.Identity, cr.Volumes)
	}
}

// Image volumes: each mount's image is admitted as its own
// user_specified_image under the pod's namespace (marked as a volume, so
// the decision's stage says so), other mounts are left
// alone, and the lifecycle gets the admitted images in mount order.
func TestCreateContainerAdmitsEachImageVolumeAndPassesThemInOrder(t *testing.T) {
	f := createFixture(t)
	req := createReq("web",
		imageMount("/b", "reg/b:2", "mirror.example/b:2"),
		&runtimeapi.Mount{ContainerPath: "/data", HostPath: "/srv/data"},
		imageMount("/a", "sha256:vola", "reg/a:1"),
	)
	if _, err := create(t, f, req); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range f.img.admitted {
		if a.Namespace != "team-a" || a.Pod != "pod1" || a.Container != "web" {
			t.Fatalf("admission %+v not under the stored pod", a)
		}
		kind := "image"
		if a.Volume {
			kind = "volume"
		}
		got = append(got, kind+" "+a.Image.ID+" as "+a.UserRef)
	}
	want := []string{"image sha256:app as reg/app:1", "volume sha256:volb as mirror.example/b:2", "volume sha256:vola as reg/a:1"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("admissions %q, want %q", got, want)
	}
	vols := f.lc.created[0].Volumes
	if len(vols) != 2 || vols[0] != volB || vols[1] != volA {
		t.Fatalf("lifecycle volumes %v, want [volb vola]", vols)
	}
}

// A policy rejection, of the image or of any image volume, reaches the
// client as Unknown with the SignatureValidationFailed prefix, and the
// lifecycle never sees the request.
func TestCreateContainerRejectedAdmissionNeverReachesTheLifecycle(t *testing.T) {
	rej := &policy.Rejection{Reason: errors.New("A signature was required, but no signature exists")}
	for _, c := range []struct {
		name     string
		rejected string
		err      error
	}{
		{"image rejected", "sha256:app", rej},
		{"image refused", "sha256:app", fmt.Errorf("%w: no verified manifest recorded", policy.ErrRefused)},
		{"second volume rejected", "sha256:vola", rej},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := createFixture(t)
			f.img.admitErr = map[string]error{c.rejected: c.err}
			_, err := create(t, f, createReq("web", imageMount("/b", "reg/b:2", "reg/b:2"), imageMount("/a", "reg/a:1", "reg/a:1")))
			wantCode(t, err, codes.Unknown)
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "SignatureValidationFailed: ") {
				t.Fatalf("message %q lacks the SignatureValidationFailed prefix", msg)
			}
			wantCalls(t, "lifecycle", f.lc.got())
		})
	}
}

func TestCreateContainerErrorCodes(t *testing.T) {
	for _, c := range []struct {
		name      string
		setup     func(*fixture, *runtimeapi.CreateContainerRequest)
		code      codes.Code
		lifecycle bool // whether the lifecycle was asked
	}{
		{"missing pod is NotFound", func(f *fixture, r *runtimeapi.CreateContainerRequest) { r.PodSandboxId = "gone" }, codes.NotFound, false},
		{"ambiguous pod prefix is InvalidArgument", func(f *fixture, r *runtimeapi.CreateContainerRequest) {
			f.addPod("pod2", "team-a", nil)
			r.PodSandboxId = "pod"
		}, codes.InvalidArgument, false},
		{"missing image is NotFound", func(f *fixture, r *runtimeapi.CreateContainerRequest) { r.Config.Image.Image = "reg/none:1" }, codes.NotFound, false},
		{"invalid image reference is InvalidArgument", func(f *fixture, r *runtimeapi.CreateContainerRequest) {
			f.img.getErr = map[string]error{"": fmt.Errorf("%q: %w", "", image.ErrInvalidReference)}
			r.Config.Image.Image = ""
		}, codes.InvalidArgument, false},
		{"missing volume image is NotFound", func(f *fixture, r *runtimeapi.CreateContainerRequest) {
			r.Config.Mounts = []*runtimeapi.Mount{imageMount("/v", "reg/none:1", "reg/none:1")}
		}, codes.NotFound, false},
		{"invalid namespace is InvalidArgument", func(f *fixture, r *runtimeapi.CreateContainerRequest) {
			f.img.admitErr = map[string]error{"sha256:app": fmt.Errorf("namespace %q: %w", "../x", policy.ErrInvalidNamespace)}
		}, codes.InvalidArgument, false},
		{"reserved name is AlreadyExists", func(f *fixture, r *runtimeapi.CreateContainerRequest) {
			f.lc.err = fmt.Errorf("create container: container web_0: %w by x", sandbox.ErrContainerNameReserved)
		}, codes.AlreadyExists, true},
		{"pod not ready is FailedPrecondition", func(f *fixture, r *runtimeapi.CreateContainerRequest) {
			f.lc.err = fmt.Errorf("create container: pod sandbox pod1 is not ready: %w", lifecycle.ErrState)
		}, codes.FailedPrecondition, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := createFixture(t)
			req := createReq("web")
			c.setup(f, req)
			_, err := create(t, f, req)
			wantCode(t, err, c.code)
			if asked := len(f.lc.got()) > 0; asked != c.lifecycle {
				t.Fatalf("lifecycle asked: %v, want %v", asked, c.lifecycle)
			}
		})
	}
}
