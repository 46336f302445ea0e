package nri

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/containerd/nri/pkg/api"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// podSandbox is the pod as NRI plugins see it.
func podSandbox(p *sandbox.Pod) *api.PodSandbox {
	cfg := p.Config
	md := cfg.GetMetadata()
	linux := &api.LinuxPodSandbox{CgroupParent: cfg.GetLinux().GetCgroupParent()}
	for t, path := range map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: p.NetNS, specs.IPCNamespace: p.IPCNS, specs.UTSNamespace: p.UTSNS, specs.UserNamespace: p.UserNS} {
		if path != "" {
			linux.Namespaces = append(linux.Namespaces, &api.LinuxNamespace{Type: string(t), Path: path})
		}
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		if oci, err := spec.Resources(r); err == nil {
			linux.PodResources = api.FromOCILinuxResources(oci, nil)
		}
	}
	if r := cfg.GetLinux().GetOverhead(); r != nil {
		if oci, err := spec.Resources(r); err == nil {
			linux.PodOverhead = api.FromOCILinuxResources(oci, nil)
		}
	}
	return &api.PodSandbox{
		Id: p.ID, Name: md.GetName(), Uid: md.GetUid(), Namespace: md.GetNamespace(),
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: p.RuntimeHandler,
		Linux: linux, Ips: p.IPs,
	}
}

// container is the container as NRI plugins see it: crivet's record, the
// OCI spec it runs with (sp; nil reads the bundle's, if any) and its
// process state (nil: not created yet).
func container(c *sandbox.Container, sp *specs.Spec, st *runtime.Status) *api.Container {
	if sp == nil {
		sp = bundleSpec(c.Bundle)
	}
	out := &api.Container{
		Id: c.ID, PodSandboxId: c.PodID, Name: c.Config.GetMetadata().GetName(),
		Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
		CreatedAt: c.CreatedAt.UnixNano(),
		// What crivet verified the image as; read only, for plugins that
		// add their own checks (see boundary.go).
		Image: &api.Image{Name: c.ImageRef, ConfigDigest: c.ImageID},
		State: api.ContainerState_CONTAINER_UNKNOWN,
	}
	if st != nil {
		switch st.State {
		case runtime.StateCreated:
			out.State = api.ContainerState_CONTAINER_CREATED
		case runtime.StateRunning:
			out.State = api.ContainerState_CONTAINER_RUNNING
		case runtime.StateExited:
			out.State = api.ContainerState_CONTAINER_STOPPED
		}
		out.Pid = uint32(st.Pid)
		if !st.StartedAt.IsZero() {
			out.StartedAt = st.StartedAt.UnixNano()
		}
		if !st.FinishedAt.IsZero() {
			out.FinishedAt = st.FinishedAt.UnixNano()
		}
		out.ExitCode, out.StatusReason, out.StatusMessage = st.ExitCode, st.Reason, st.Message
	}
	if sp == nil {
		return out
	}
	if sp.Annotations != nil {
		out.Annotations = sp.Annotations
	}
	out.Mounts = api.FromOCIMounts(sp.Mounts)
	out.Hooks = api.FromOCIHooks(sp.Hooks)
	if p := sp.Process; p != nil {
		out.Args, out.Env = p.Args, p.Env
		out.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: p.User.AdditionalGids}
		for _, r := range p.Rlimits {
			out.Rlimits = append(out.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
	}
	if l := sp.Linux; l != nil {
		lc := &api.LinuxContainer{
			Namespaces:  api.FromOCILinuxNamespaces(l.Namespaces),
			Devices:     api.FromOCILinuxDevices(l.Devices),
			Resources:   api.FromOCILinuxResources(l.Resources, sp.Annotations),
			CgroupsPath: l.CgroupsPath,
			Sysctl:      l.Sysctl,
			NetDevices:  api.FromOCILinuxNetDevices(l.NetDevices),
		}
		if l.Seccomp != nil { // the library's conversion wants one
			lc.SeccompPolicy = api.FromOCILinuxSeccomp(l.Seccomp)
		}
		if sp.Process != nil {
			if sp.Process.OOMScoreAdj != nil {
				lc.OomScoreAdj = api.Int(*sp.Process.OOMScoreAdj)
			}
			lc.IoPriority = api.FromOCILinuxIOPriority(sp.Process.IOPriority)
			lc.Scheduler = api.FromOCILinuxScheduler(sp.Process.Scheduler)
		}
		out.Linux = lc
	}
	return out
}

// bundleSpec reads a container's config.json; nil when there is none
// (a create that failed before it, a removal after it).
func bundleSpec(bundle string) *specs.Spec {
	if bundle == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil
	}
	sp := &specs.Spec{}
	if json.Unmarshal(data, sp) != nil {
		return nil
	}
	return sp
}
