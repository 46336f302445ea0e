package spec

import (
	"fmt"

	"github.com/crivet/crivet/oci/cgroup"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cgroupsPath is runc's linux.cgroupsPath of id under the node's driver,
// below parent or, when that is "", the pod's cgroup parent; a parent
// written for the other driver is the caller's mistake (kubelet's
// cgroupDriver differs from crivet's).
func cgroupsPath(d cgroup.Driver, parent string, pod *runtimeapi.PodSandboxConfig, id string) (string, error) {
	if parent == "" {
		parent = pod.GetLinux().GetCgroupParent()
	}
	p, err := d.ContainerPath(parent, id)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return p, nil
}

// Resources maps CRI resources to OCI ones for UpdateContainerResources,
// with the same host adaptations as Container. It sets no device rules, so
// an update leaves the container's device access alone.
func Resources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	h, err := CurrentHost()
	if err != nil {
		return nil, err
	}
	return resources(r, h)
}

// resources maps CRI resources to OCI ones. Requests the host cannot apply
// are dropped when they ask for nothing and refused when they ask for
// something: kubelet sends a hugepage limit of 0 for every page size, and
// runc fails on those when no hugetlb controller is mounted.
func resources(r *runtimeapi.LinuxContainerResources, h *Host) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	if r == nil {
		return out, nil
	}
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := r.GetCpuShares(); v > 0 {
		shares := uint64(v)
		cpu.Shares = &shares
	}
	if v := r.GetCpuQuota(); v != 0 {
		cpu.Quota = &v
	}
	if v := r.GetCpuPeriod(); v > 0 {
		period := uint64(v)
		cpu.Period = &period
	}
	if *cpu != (specs.LinuxCPU{}) {
		out.CPU = cpu
	}

	if limit := r.GetMemoryLimitInBytes(); limit > 0 {
		out.Memory = &specs.LinuxMemory{Limit: &limit}
		// Without a swap limit the container could swap past its memory
		// limit; equal limits mean no swap (docker and containerd default).
		swap := limit
		if s := r.GetMemorySwapLimitInBytes(); s != 0 {
			swap = s
		}
		if h.Swap {
			out.Memory.Swap = &swap
		}
	}

	for _, l := range r.GetHugepageLimits() {
		if !h.Hugetlb {
			if l.GetLimit() != 0 {
				return nil, fmt.Errorf("%w: hugepage limit %s=%d: no hugetlb cgroup controller on this host", ErrUnsupported, l.GetPageSize(), l.GetLimit())
			}
			continue
		}
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: l.GetPageSize(), Limit: l.GetLimit()})
	}

	if len(r.GetUnified()) > 0 {
		if !h.CgroupV2 {
			return nil, fmt.Errorf("%w: unified cgroup parameters on a cgroup v1 host", ErrUnsupported)
		}
		out.Unified = map[string]string{}
		for k, v := range r.GetUnified() {
			out.Unified[k] = v
		}
	}
	return out, nil
}

// oomScoreAdj clamps adj to what the kernel lets runc set: without
// CAP_SYS_RESOURCE nothing below crivet's own value (the inherited floor),
// else runc dies with "can't get final child's PID from pipe". kubelet asks
// -997 for Guaranteed pods and -998 for sandboxes, so this matters on hosts
// like ours (containerd's restrict_oom_score_adj does the same).
func oomScoreAdj(adj int, h *Host) int {
	adj = max(-1000, min(1000, adj))
	if !h.SysResource && adj < h.OOMScoreAdj {
		adj = h.OOMScoreAdj
	}
	return adj
}

// rlimits validates configured rlimits and caps their hard limits at
// crivet's own when it may not raise them (no CAP_SYS_RESOURCE), for the
// same reason as oomScoreAdj.
func rlimits(in []specs.POSIXRlimit, h *Host) ([]specs.POSIXRlimit, error) {
	var out []specs.POSIXRlimit
	for _, rl := range in {
		if _, ok := rlimitTypes[rl.Type]; !ok {
			return nil, fmt.Errorf("%w: rlimit type %q", ErrInvalid, rl.Type)
		}
		if max, ok := h.HardRlimits[rl.Type]; ok && !h.SysResource && rl.Hard > max {
			rl.Hard = max
		}
		rl.Soft = min(rl.Soft, rl.Hard)
		out = append(out, rl)
	}
	return out, nil
}
