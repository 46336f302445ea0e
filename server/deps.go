package server

import (
	"context"
	"io"
	"time"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// What the CRI server needs of each domain package, declared here where it
// is consumed: the real services satisfy them, and the RPC tests use
// small fakes for the edge cases.

// images is the image service (image.Service).
type images interface {
	Pull(ctx context.Context, req image.PullRequest) (*image.Image, error)
	Get(ref string) (*image.Image, error)
	List() ([]*image.Image, error)
	Remove(ref string) error
	FsUsage() (image.Usage, error)
	RootfsUsage(containerID string) (image.LayerUsage, error)
	GraphRoot() string
}

// pods reads the pod and container records (sandbox.Manager).
type pods interface {
	Get(id string) (*sandbox.Pod, error)
	List() []*sandbox.Pod
	GetContainer(id string) (*sandbox.Container, error)
	Containers(podID string) []*sandbox.Container
	// ContainersView is Containers without copies: read only.
	ContainersView(podID string) []*sandbox.Container
	NetworkReady() error
}

// containers runs the container and pod lifecycle (lifecycle.Manager).
type containers interface {
	CreateContainer(ctx context.Context, req lifecycle.CreateRequest) (*sandbox.Container, error)
	UpdateContainer(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error
	StartContainer(ctx context.Context, c *sandbox.Container) error
	StopContainer(ctx context.Context, c *sandbox.Container, timeout time.Duration) error
	RemoveContainer(ctx context.Context, c *sandbox.Container) error
	RunPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (*sandbox.Pod, error)
	StopPod(ctx context.Context, pod *sandbox.Pod) error
	RemovePod(ctx context.Context, pod *sandbox.Pod) error
	UpdatePod(ctx context.Context, id string, overhead, res *runtimeapi.LinuxContainerResources) error
	Subscribe() (<-chan lifecycle.Event, func())
	CheckpointContainer(ctx context.Context, c *sandbox.Container, location string) error
}

// Observer is told of each CRI request when it ends: the RPC's name
// ("PullImage"), the gRPC code it was answered with, and how long it took
// (a stream: how long it was open). The metrics package implements it.
type Observer interface {
	CRIRequest(method string, code codes.Code, took time.Duration)
}

// processes answers for running containers' processes (runtime.Runtime).
type processes interface {
	Status(ctx context.Context, id string) (runtime.Status, error)
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error)
	Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error
	Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error
	ReopenLog(ctx context.Context, id string) error
	// Ready: the runtime binary can run containers, checked live.
	Ready(ctx context.Context) error
}
