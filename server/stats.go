package server

import (
	"context"
	"strings"
	"time"

	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/sandbox"
	"github.com/crivet/crivet/stats"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerStats maps one read of the container's cgroup (nil when it has
// none: a stopped container) and its writable layer.
func (s *criServer) containerStats(ctx context.Context, c *sandbox.Container) (*runtimeapi.ContainerStats, *stats.Cgroup) {
	now := time.Now().UnixNano()
	st := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: c.ID, Metadata: c.Config.GetMetadata(), Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations()},
		Cpu:        &runtimeapi.CpuUsage{Timestamp: now},
		Memory:     &runtimeapi.MemoryUsage{Timestamp: now},
	}
	cg, err := stats.ReadCgroup(c.CgroupPath, stats.Options{})
	if err == nil {
		st.Cpu.UsageCoreNanoSeconds = &runtimeapi.UInt64Value{Value: cg.CPU.Usage}
		st.Memory.UsageBytes = &runtimeapi.UInt64Value{Value: cg.Memory.Usage}
		st.Memory.WorkingSetBytes = &runtimeapi.UInt64Value{Value: cg.Memory.WorkingSet}
		st.Memory.RssBytes = &runtimeapi.UInt64Value{Value: cg.Memory.RSS}
		st.Memory.PageFaults = &runtimeapi.UInt64Value{Value: cg.Memory.PageFaults}
		st.Memory.MajorPageFaults = &runtimeapi.UInt64Value{Value: cg.Memory.MajorFaults}
		if avail, ok := cg.Memory.AvailableBytes(); ok {
			st.Memory.AvailableBytes = &runtimeapi.UInt64Value{Value: avail}
		}
	}
	if used, err := s.images.RootfsUsage(c.ID); err == nil {
		st.WritableLayer = &runtimeapi.FilesystemUsage{Timestamp: now,
			FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: s.images.GraphRoot()}, UsedBytes: &runtimeapi.UInt64Value{Value: used.Bytes}}
		// kubelet's Summary API shows inodes_used as the container's
		// rootfs inodesUsed; nil when the driver cannot count them.
		if used.Inodes > 0 {
			st.WritableLayer.InodesUsed = &runtimeapi.UInt64Value{Value: used.Inodes}
		}
	}
	return st, cg
}

func (s *criServer) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.pods.GetContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, _ := s.containerStats(ctx, c)
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

func (s *criServer) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	var out []*runtimeapi.ContainerStats
	for _, c := range s.pods.Containers(f.GetPodSandboxId()) {
		if f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()) {
			continue
		}
		if !labelsMatch(c.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		if lifecycle.Running(s.rt.Status(ctx, c.ID)) != nil {
			continue
		}
		st, _ := s.containerStats(ctx, c)
		out = append(out, st)
	}
	return out
}

func (s *criServer) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{Stats: s.listContainerStats(ctx, req.GetFilter())}, nil
}

func (s *criServer) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	return sendBatches(s.listContainerStats(stream.Context(), req.GetFilter()), func(b []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: b})
	})
}

func (s *criServer) podStats(ctx context.Context, p *sandbox.Pod) *runtimeapi.PodSandboxStats {
	now := time.Now().UnixNano()
	ls := &runtimeapi.LinuxPodSandboxStats{Cpu: &runtimeapi.CpuUsage{Timestamp: now}, Memory: &runtimeapi.MemoryUsage{Timestamp: now}}
	var cpu, mem, ws, procs uint64
	for _, c := range s.pods.Containers(p.ID) {
		cs, cg := s.containerStats(ctx, c)
		ls.Containers = append(ls.Containers, cs)
		if cg != nil {
			cpu += cg.CPU.Usage
			mem += cg.Memory.Usage
			ws += cg.Memory.WorkingSet
			procs += cg.Pids
		}
	}
	// The pod cgroup kubelet created holds every container (and what the
	// sums above miss: exited containers' past use): it wins when present.
	if pc, err := stats.ReadCgroup(p.CgroupDir, stats.Options{}); err == nil {
		cpu, mem, ws = pc.CPU.Usage, pc.Memory.Usage, pc.Memory.WorkingSet
	}
	ls.Cpu.UsageCoreNanoSeconds = &runtimeapi.UInt64Value{Value: cpu}
	ls.Memory.UsageBytes = &runtimeapi.UInt64Value{Value: mem}
	ls.Memory.WorkingSetBytes = &runtimeapi.UInt64Value{Value: ws}
	ls.Process = &runtimeapi.ProcessUsage{Timestamp: now, ProcessCount: &runtimeapi.UInt64Value{Value: procs}}
	// No process owns the pod's network namespace, so cAdvisor cannot see
	// it: the pod's interface counters come from here.
	if ifaces := stats.NetNSInterfaces(p.NetNS); len(ifaces) > 0 {
		ls.Network = &runtimeapi.NetworkUsage{Timestamp: now}
		for _, i := range ifaces {
			u := &runtimeapi.NetworkInterfaceUsage{Name: i.Name,
				RxBytes: &runtimeapi.UInt64Value{Value: i.RxBytes}, RxErrors: &runtimeapi.UInt64Value{Value: i.RxErrors},
				TxBytes: &runtimeapi.UInt64Value{Value: i.TxBytes}, TxErrors: &runtimeapi.UInt64Value{Value: i.TxErrors}}
			ls.Network.Interfaces = append(ls.Network.Interfaces, u)
			if i.Name == "eth0" || ls.Network.DefaultInterface == nil {
				ls.Network.DefaultInterface = u
			}
		}
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: p.ID, Metadata: p.Config.GetMetadata(), Labels: p.Config.GetLabels(), Annotations: p.Config.GetAnnotations()},
		Linux:      ls,
	}
}

func (s *criServer) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	p, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.podStats(ctx, p)}, nil
}

func (s *criServer) listPodStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
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

func (s *criServer) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: s.listPodStats(ctx, req.GetFilter())}, nil
}

func (s *criServer) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	return sendBatches(s.listPodStats(stream.Context(), req.GetFilter()), func(b []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: b})
	})
}
