package lifecycle

import (
	"context"
	"io"
	"syscall"
	"time"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/checkpoint"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// What the lifecycle needs of each domain package, declared here where it
// is consumed. The real services (image.Service, sandbox.Manager,
// runtime.Runtime) satisfy them, checked below at compile time and used
// by every e2e test; the lifecycle's unit tests give it small fakes so
// that each step, undo and recovery can be driven on its own.

// Images is the image service: the create-time admission of the images a
// container runs, and the storage the containers' files live on.
type Images interface {
	// Get finds a stored image as ImageStatus would.
	Get(ref string) (*image.Image, error)
	// AdmitFor is the create-time signature decision (image/trust).
	AdmitFor(ctx context.Context, req image.AdmitRequest) (image.Admission, error)
	// OpenCheckpoint: the checkpoint an image built from one holds,
	// mounted until release (nil, nil, nil for any other image).
	OpenCheckpoint(img *image.Image) (*checkpoint.Archive, func() error, error)
	RunConfig(img *image.Image) (image.RunConfig, error)

	CreateRootfs(containerID string, img *image.Image, idmap *image.IDMapping) (string, error)
	RemoveRootfs(containerID string) error
	ListRootfs() ([]string, error)
	RootfsDiff(containerID string) (io.ReadCloser, error)
	ApplyRootfsDiff(rootfs string, diff io.Reader, deleted []string) error
	MountImage(img *image.Image) (string, error)
	UnmountImage(id string) error
	ReconcileImageMounts(want map[string]int) ([]string, error)
}

// Records are the pod and container records and the pods' node
// resources (sandbox.Manager).
type Records interface {
	Get(id string) (*sandbox.Pod, error)
	List() []*sandbox.Pod
	GetContainer(id string) (*sandbox.Container, error)
	Containers(podID string) []*sandbox.Container

	// BeginPod makes a pod's namespaces, files and network under a
	// Creating record; CommitPod lists it, AbortPod undoes it.
	BeginPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (*sandbox.Pod, error)
	CommitPod(p *sandbox.Pod) (*sandbox.Pod, error)
	AbortPod(ctx context.Context, p *sandbox.Pod)
	Update(id string, f func(*sandbox.Pod)) error
	MarkRemoving(id string) error
	Stop(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	RemoveOrphanDirs(ctx context.Context) ([]string, error)
	EndRecovery()

	ReserveContainer(pod *sandbox.Pod, cfg *runtimeapi.ContainerConfig) (id string, release func(), err error)
	BeginContainer(c *sandbox.Container) error
	AddContainer(c *sandbox.Container) error
	UpdateContainer(id string, f func(*sandbox.Container)) error
	RemoveContainer(id string) error
}

// Processes is the OCI runtime: runc and the container monitors
// (runtime.Runtime).
type Processes interface {
	Handler(name string) (runtime.HandlerInfo, error)
	Create(ctx context.Context, o runtime.CreateOptions) error
	Start(ctx context.Context, id string) error
	Status(ctx context.Context, id string) (runtime.Status, error)
	Stop(ctx context.Context, id string, sig syscall.Signal, timeout time.Duration) error
	Update(ctx context.Context, id string, res *specs.LinuxResources) error
	Checkpoint(ctx context.Context, id string, o runtime.CheckpointOptions) error
	Release(ctx context.Context, id string) error
	Delete(ctx context.Context, id string) error
	List() ([]string, error)
	WatchExits(ctx context.Context) (<-chan string, error)
}

var (
	_ Images    = (*image.Service)(nil)
	_ Records   = (*sandbox.Manager)(nil)
	_ Processes = (*runtime.Runtime)(nil)
)
