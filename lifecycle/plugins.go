package lifecycle

import (
	"context"

	"github.com/crivet/crivet/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Plugins are told of each pod and container step, in the order the
// steps happen, and may adjust a container's OCI spec before runc is given
// its bundle: NRI (package nri) implements it. Config.Plugins nil is
// noPlugins, so with NRI off nothing changes.
//
// Every call comes after crivet's own decisions: the image was admitted
// by the CRI server (signature policy) before CreateContainer reaches the
// lifecycle, and the root filesystem is already that image's when
// CreateContainer is called. An implementation must refuse an adjustment
// that would change what runs as the root filesystem (see package nri).
type Plugins interface {
	// RunPod is called once the pod's namespaces and network exist and
	// before it is recorded, listed or Ready; an error fails RunPodSandbox
	// and undoes the pod.
	RunPod(ctx context.Context, pod *sandbox.Pod) error
	// StopPod is called after the pod's containers are stopped and before
	// its network is released, once per pod. Like every call below that
	// returns nothing, a plugin's failure is the implementation's to log:
	// it must not keep a pod from stopping or going away.
	StopPod(ctx context.Context, pod *sandbox.Pod)
	// RemovePod is called before the pod's record is removed.
	RemovePod(ctx context.Context, pod *sandbox.Pod)
	// UpdatePod tells plugins kubelet changed the pod's resources
	// (overhead and the sum of its containers'); an error fails the
	// CRI update. PostUpdatePod follows a successful one.
	UpdatePod(ctx context.Context, pod *sandbox.Pod, overhead, res *specs.LinuxResources) error
	PostUpdatePod(ctx context.Context, pod *sandbox.Pod)

	// CreateContainer may adjust sp in place; an error fails the create
	// and undoes it. c is not listed yet.
	CreateContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, sp *specs.Spec) error
	// PostCreateContainer, StartContainer... report the other steps; only
	// StartContainer's error fails the step (the container is not started).
	PostCreateContainer(ctx context.Context, c *sandbox.Container)
	StartContainer(ctx context.Context, c *sandbox.Container) error
	PostStartContainer(ctx context.Context, c *sandbox.Container)
	// UpdateContainer may change the resources a CRI update asks for.
	UpdateContainer(ctx context.Context, c *sandbox.Container, res *specs.LinuxResources) (*specs.LinuxResources, error)
	PostUpdateContainer(ctx context.Context, c *sandbox.Container)
	// StopContainer is called once per container when it stops, by a
	// request or on its own.
	StopContainer(ctx context.Context, c *sandbox.Container)
	// RemoveContainer is called when a container is removed, or when a
	// create that plugins saw fails.
	RemoveContainer(ctx context.Context, c *sandbox.Container)

	// HoldSync keeps plugins that are connecting from being synchronized
	// until release is called: a container being created is either in a
	// new plugin's synchronization or told to it as CreateContainer.
	HoldSync() (release func())
}

// noPlugins is Plugins with nothing plugged in.
type noPlugins struct{}

func (noPlugins) RunPod(context.Context, *sandbox.Pod) error { return nil }
func (noPlugins) StopPod(context.Context, *sandbox.Pod)      {}
func (noPlugins) RemovePod(context.Context, *sandbox.Pod)    {}
func (noPlugins) UpdatePod(context.Context, *sandbox.Pod, *specs.LinuxResources, *specs.LinuxResources) error {
	return nil
}
func (noPlugins) PostUpdatePod(context.Context, *sandbox.Pod) {}
func (noPlugins) CreateContainer(context.Context, *sandbox.Pod, *sandbox.Container, *specs.Spec) error {
	return nil
}
func (noPlugins) PostCreateContainer(context.Context, *sandbox.Container)  {}
func (noPlugins) StartContainer(context.Context, *sandbox.Container) error { return nil }
func (noPlugins) PostStartContainer(context.Context, *sandbox.Container)   {}
func (noPlugins) PostUpdateContainer(context.Context, *sandbox.Container)  {}
func (noPlugins) StopContainer(context.Context, *sandbox.Container)        {}
func (noPlugins) RemoveContainer(context.Context, *sandbox.Container)      {}
func (noPlugins) HoldSync() func()                                         { return func() {} }
func (noPlugins) UpdateContainer(_ context.Context, _ *sandbox.Container, res *specs.LinuxResources) (*specs.LinuxResources, error) {
	return res, nil
}
