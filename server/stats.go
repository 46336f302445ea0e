package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cgroupUsage is what stats report of one cgroup.
type cgroupUsage struct {
	cpuNanos                                       uint64
	memUsage, workingSet, rss, pgfault, pgmajfault uint64
	pids                                           uint64
}

// readCgroup reads CPU and memory use of a cgroup path (as given to runc:
// relative to each hierarchy's root) on v1 or v2.
func readCgroup(path string) (cgroupUsage, error) {
	var u cgroupUsage
	if path == "" {
		return u, fmt.Errorf("no cgroup")
	}
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(path)
		if err != nil {
			return u, err
		}
		st, err := m.Stat()
		if err != nil {
			return u, err
		}
		if st.CPU != nil {
			u.cpuNanos = st.CPU.UsageUsec * 1000
		}
		if st.Memory != nil {
			u.memUsage = st.Memory.Usage
			u.rss = st.Memory.Anon
			u.pgfault, u.pgmajfault = st.Memory.Pgfault, st.Memory.Pgmajfault
			u.workingSet = sub(st.Memory.Usage, st.Memory.InactiveFile)
		}
		if st.Pids != nil {
			u.pids = st.Pids.Current
		}
		return u, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		return u, err
	}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return u, err
	}
	if st.CPU != nil && st.CPU.Usage != nil {
		u.cpuNanos = st.CPU.Usage.Total
	}
	if st.Memory != nil && st.Memory.Usage != nil {
		u.memUsage = st.Memory.Usage.Usage
		u.rss = st.Memory.TotalRSS
		u.pgfault, u.pgmajfault = st.Memory.TotalPgFault, st.Memory.TotalPgMajFault
		// kubelet's working set: usage minus inactive file cache.
		u.workingSet = sub(st.Memory.Usage.Usage, st.Memory.TotalInactiveFile)
	}
	if st.Pids != nil {
		u.pids = st.Pids.Current
	}
	return u, nil
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func (s *Server) containerStats(ctx context.Context, c *sandbox.Container) (*runtimeapi.ContainerStats, error) {
	now := time.Now().UnixNano()
	st := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: c.ID, Metadata: c.Config.GetMetadata(), Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations()},
		Cpu:        &runtimeapi.CpuUsage{Timestamp: now},
		Memory:     &runtimeapi.MemoryUsage{Timestamp: now},
	}
	if u, err := readCgroup(c.CgroupPath); err == nil {
		st.Cpu.UsageCoreNanoSeconds = &runtimeapi.UInt64Value{Value: u.cpuNanos}
		st.Memory.UsageBytes = &runtimeapi.UInt64Value{Value: u.memUsage}
		st.Memory.WorkingSetBytes = &runtimeapi.UInt64Value{Value: u.workingSet}
		st.Memory.RssBytes = &runtimeapi.UInt64Value{Value: u.rss}
		st.Memory.PageFaults = &runtimeapi.UInt64Value{Value: u.pgfault}
		st.Memory.MajorPageFaults = &runtimeapi.UInt64Value{Value: u.pgmajfault}
	}
	if used, err := s.images.RootfsUsage(c.ID); err == nil {
		st.WritableLayer = &runtimeapi.FilesystemUsage{Timestamp: now,
			FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: s.images.Storage().GraphRoot()}, UsedBytes: &runtimeapi.UInt64Value{Value: used}}
	}
	return st, nil
}

func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.pods.GetContainer(req.GetContainerId())
	if err != nil {
		return nil, toStatus(err)
	}
	st, err := s.containerStats(ctx, c)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

func (s *Server) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	var out []*runtimeapi.ContainerStats
	for _, c := range s.pods.Containers(f.GetPodSandboxId()) {
		if f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()) {
			continue
		}
		if !labelsMatch(c.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		if st, err := s.rt.Status(ctx, c.ID); err != nil || st.State != "running" {
			continue
		}
		if st, err := s.containerStats(ctx, c); err == nil {
			out = append(out, st)
		}
	}
	return out
}

func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{Stats: s.listContainerStats(ctx, req.GetFilter())}, nil
}

func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	return sendBatches(s.listContainerStats(stream.Context(), req.GetFilter()), func(b []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: b})
	})
}

func (s *Server) podStats(ctx context.Context, p *sandbox.Pod) *runtimeapi.PodSandboxStats {
	now := time.Now().UnixNano()
	ls := &runtimeapi.LinuxPodSandboxStats{Cpu: &runtimeapi.CpuUsage{Timestamp: now}, Memory: &runtimeapi.MemoryUsage{Timestamp: now}}
	var cpu, mem, ws uint64
	var procs uint64
	for _, c := range s.pods.Containers(p.ID) {
		cs, err := s.containerStats(ctx, c)
		if err != nil {
			continue
		}
		ls.Containers = append(ls.Containers, cs)
		cpu += cs.Cpu.GetUsageCoreNanoSeconds().GetValue()
		mem += cs.Memory.GetUsageBytes().GetValue()
		ws += cs.Memory.GetWorkingSetBytes().GetValue()
		if u, err := readCgroup(c.CgroupPath); err == nil {
			procs += u.pids
		}
	}
	// The pod cgroup kubelet created holds every container: prefer it.
	if u, err := readCgroup(p.Config.GetLinux().GetCgroupParent()); err == nil {
		cpu, mem, ws = u.cpuNanos, u.memUsage, u.workingSet
	}
	ls.Cpu.UsageCoreNanoSeconds = &runtimeapi.UInt64Value{Value: cpu}
	ls.Memory.UsageBytes = &runtimeapi.UInt64Value{Value: mem}
	ls.Memory.WorkingSetBytes = &runtimeapi.UInt64Value{Value: ws}
	ls.Process = &runtimeapi.ProcessUsage{Timestamp: now, ProcessCount: &runtimeapi.UInt64Value{Value: procs}}
	// No process owns the pod's network namespace, so cAdvisor cannot see
	// it: the pod's interface counters come from here.
	if ifaces := podInterfaces(p.NetNS); len(ifaces) > 0 {
		ls.Network = &runtimeapi.NetworkUsage{Timestamp: now}
		for _, i := range ifaces {
			u := &runtimeapi.NetworkInterfaceUsage{Name: i.name,
				RxBytes: &runtimeapi.UInt64Value{Value: i.rxBytes}, RxErrors: &runtimeapi.UInt64Value{Value: i.rxErrors},
				TxBytes: &runtimeapi.UInt64Value{Value: i.txBytes}, TxErrors: &runtimeapi.UInt64Value{Value: i.txErrors}}
			ls.Network.Interfaces = append(ls.Network.Interfaces, u)
			if i.name == "eth0" || ls.Network.DefaultInterface == nil {
				ls.Network.DefaultInterface = u
			}
		}
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: p.ID, Metadata: p.Config.GetMetadata(), Labels: p.Config.GetLabels(), Annotations: p.Config.GetAnnotations()},
		Linux:      ls,
	}
}

func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	p, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.podStats(ctx, p)}, nil
}

func (s *Server) listPodStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	var out []*runtimeapi.PodSandboxStats
	for _, p := range s.pods.List() {
		if f.GetId() != "" && !strings.HasPrefix(p.ID, f.GetId()) {
			continue
		}
		if !labelsMatch(p.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, s.podStats(ctx, p))
	}
	return out
}

func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: s.listPodStats(ctx, req.GetFilter())}, nil
}

func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	return sendBatches(s.listPodStats(stream.Context(), req.GetFilter()), func(b []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: b})
	})
}
