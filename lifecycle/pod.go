package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RunPod creates a pod sandbox in this order: the request is checked
// (handler, user namespace, cgroup parent) before anything is made; the
// pod's namespaces, files, Creating record and network are made
// (sandbox.BeginPod); plugins see it; a pod that shares one PID namespace
// gets its infra process; and only then is it recorded as created and
// listed. A failed step undoes the ones before it; a crash in between
// leaves a Creating pod, which Recover removes with whatever of its infra
// exists.
func (m *Manager) RunPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (*sandbox.Pod, error) {
	// An unknown handler is refused before anything is made; the pod
	// record keeps the name, and every container of the pod is created
	// on that handler's runc.
	h, err := m.rt.Handler(handler)
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox: %w", err)
	}
	// A pod user namespace needs id-mapped mounts of the handler's runc
	// and of the kernel; without them runc would fail late, or leave the
	// container's files owned by IDs it cannot use.
	// The request is checked first (a bad one is InvalidArgument on any
	// handler), and by PodUserns: POD is the mode enum's zero value, so a
	// pod without userns_options would read as asking for one.
	userns, err := spec.PodUserns(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox: %w", err)
	}
	if userns != nil && !h.Features.IDMappedMounts {
		return nil, fmt.Errorf("run pod sandbox: %w: a pod user namespace (hostUsers: false) on runtime handler %q (runc %s at %s): %s",
			spec.ErrUnsupported, h.Name, h.Version, h.Runc, strings.Join(h.Features.Missing, "; "))
	}
	// A cgroup parent of the other driver (kubelet's cgroupDriver is not
	// crivet's) is refused before anything is made.
	cgDir, err := m.cfg.CgroupDriver.PodDir(cfg.GetLinux().GetCgroupParent())
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox: %w: %w", spec.ErrInvalid, err)
	}
	// The pod's namespaces, files, record (Creating) and network first
	// (sandbox), then what runs in it, then the record says Created.
	p, err := m.pods.BeginPod(ctx, cfg, handler)
	if err != nil {
		return nil, err
	}
	p.CgroupDir = cgDir
	// Plugins see the pod with its network, before it is listed.
	if err := m.plugins.RunPod(ctx, p); err != nil {
		m.pods.AbortPod(context.WithoutCancel(ctx), p)
		return nil, fmt.Errorf("run pod sandbox: %w", err)
	}
	if needsInfra(cfg) {
		if err := m.startInfra(ctx, p); err != nil {
			m.plugins.RemovePod(context.WithoutCancel(ctx), p)
			m.pods.AbortPod(context.WithoutCancel(ctx), p)
			return nil, err
		}
	}
	created, err := m.pods.CommitPod(p)
	if err != nil {
		if p.InfraID != "" {
			_ = m.removeInfra(context.WithoutCancel(ctx), p.ID)
		}
		m.plugins.RemovePod(context.WithoutCancel(ctx), p)
		m.pods.AbortPod(context.WithoutCancel(ctx), p)
		return nil, err
	}
	return created, nil
}

// needsInfra: only a pod whose containers share one PID namespace needs a
// process to own that namespace; everything else is pinned.
func needsInfra(cfg *runtimeapi.PodSandboxConfig) bool {
	return cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtimeapi.NamespaceMode_POD
}

// StopPod stops every container of the pod and its infra process, each
// bounded by its grace period, then releases the pod's network.
func (m *Manager) StopPod(ctx context.Context, pod *sandbox.Pod) error {
	if err := m.stopPodProcesses(ctx, pod); err != nil {
		return err
	}
	if pod.State == sandbox.Ready {
		m.plugins.StopPod(ctx, pod) // once: a second stop finds it NotReady
	}
	return m.pods.Stop(ctx, pod.ID)
}

// stopPodProcesses stops every container of the pod, then its infra
// process; each stop is bounded by its grace period.
func (m *Manager) stopPodProcesses(ctx context.Context, pod *sandbox.Pod) error {
	var errs []error
	for _, c := range m.pods.Containers(pod.ID) {
		if err := m.StopContainer(ctx, c, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if pod.InfraID != "" {
		if err := m.stopInfra(ctx, pod); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", pod.ID, err)
	}
	return nil
}

// RemovePod marks the pod Removing, removes its containers (each stopped
// first), its infra container and then the pod itself (CNI DEL, pins,
// files, record). Every step takes a part already gone as done; start-up
// recovery runs it again for a pod still Removing or Creating.
func (m *Manager) RemovePod(ctx context.Context, pod *sandbox.Pod) error {
	if pod.Phase != sandbox.Removing {
		if err := m.pods.MarkRemoving(pod.ID); err != nil {
			return fmt.Errorf("remove pod sandbox %s: %w", pod.ID, err)
		}
	}
	for _, c := range m.pods.Containers(pod.ID) {
		if err := m.RemoveContainer(ctx, c); err != nil {
			return fmt.Errorf("remove pod sandbox %s: %w", pod.ID, err)
		}
	}
	// By the pod's ID, recorded or not: a crash can come between the
	// infra's runc create and the record naming it.
	if err := m.removeInfra(ctx, pod.ID); err != nil {
		return fmt.Errorf("remove pod sandbox %s: %w", pod.ID, err)
	}
	if pod.State == sandbox.Ready {
		m.plugins.StopPod(ctx, pod)
	}
	m.plugins.RemovePod(ctx, pod)
	return m.pods.Remove(ctx, pod.ID)
}

// UpdatePod is kubelet telling the runtime a pod's resources changed
// (in-place pod resize). The pod-level cgroup is kubelet's: it is the
// pod's cgroup_parent and kubelet resizes it itself, so crivet has
// nothing of its own to change; plugins (NRI) are told, and may refuse.
func (m *Manager) UpdatePod(ctx context.Context, id string, overhead, res *runtimeapi.LinuxContainerResources) error {
	pod, err := m.pods.Get(id)
	if err != nil {
		return fmt.Errorf("update pod sandbox: %w", err)
	}
	convert := func(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
		if r == nil {
			return nil, nil
		}
		return spec.Resources(r)
	}
	o, err := convert(overhead)
	if err != nil {
		return fmt.Errorf("update pod sandbox %s: overhead: %w", id, err)
	}
	r, err := convert(res)
	if err != nil {
		return fmt.Errorf("update pod sandbox %s: %w", id, err)
	}
	if err := m.plugins.UpdatePod(ctx, pod, o, r); err != nil {
		return fmt.Errorf("update pod sandbox %s: %w", id, err)
	}
	m.plugins.PostUpdatePod(ctx, pod)
	return nil
}
