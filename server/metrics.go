package server

import (
	"context"
	"time"

	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI metrics (kubelet's PodAndContainerStatsFromCRI): the cAdvisor names
// and labels kubelet publishes, read from each container's cgroup.
var metricLabels = []string{"container", "pod", "namespace", "image"}

var metricDescriptors = []*runtimeapi.MetricDescriptor{
	{Name: "container_cpu_usage_seconds_total", Help: "Cumulative cpu time consumed in seconds.", LabelKeys: metricLabels},
	{Name: "container_memory_usage_bytes", Help: "Current memory usage in bytes, including all memory regardless of when it was accessed.", LabelKeys: metricLabels},
	{Name: "container_memory_working_set_bytes", Help: "Current working set in bytes.", LabelKeys: metricLabels},
	{Name: "container_memory_rss", Help: "Size of RSS in bytes.", LabelKeys: metricLabels},
	{Name: "container_processes", Help: "Number of processes running inside the container.", LabelKeys: metricLabels},
}

func (s *Server) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: metricDescriptors}, nil
}

func cgroupMetrics(u cgroupUsage, labels []string, now int64) []*runtimeapi.Metric {
	m := func(name string, t runtimeapi.MetricType, v uint64) *runtimeapi.Metric {
		return &runtimeapi.Metric{Name: name, Timestamp: now, MetricType: t, LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: v}}
	}
	return []*runtimeapi.Metric{
		m("container_cpu_usage_seconds_total", runtimeapi.MetricType_COUNTER, u.cpuNanos/uint64(time.Second)),
		m("container_memory_usage_bytes", runtimeapi.MetricType_GAUGE, u.memUsage),
		m("container_memory_working_set_bytes", runtimeapi.MetricType_GAUGE, u.workingSet),
		m("container_memory_rss", runtimeapi.MetricType_GAUGE, u.rss),
		m("container_processes", runtimeapi.MetricType_GAUGE, u.pids),
	}
}

func (s *Server) podMetrics(p *sandbox.Pod) *runtimeapi.PodSandboxMetrics {
	now := time.Now().UnixNano()
	md := p.Config.GetMetadata()
	out := &runtimeapi.PodSandboxMetrics{PodSandboxId: p.ID}
	if u, err := readCgroup(p.Config.GetLinux().GetCgroupParent()); err == nil {
		out.Metrics = cgroupMetrics(u, []string{"", md.GetName(), md.GetNamespace(), ""}, now)
	}
	for _, c := range s.pods.Containers(p.ID) {
		u, err := readCgroup(c.CgroupPath)
		if err != nil {
			continue // not running: no cgroup
		}
		out.ContainerMetrics = append(out.ContainerMetrics, &runtimeapi.ContainerMetrics{
			ContainerId: c.ID,
			Metrics:     cgroupMetrics(u, []string{c.Config.GetMetadata().GetName(), md.GetName(), md.GetNamespace(), c.Config.GetImage().GetImage()}, now),
		})
	}
	return out
}

func (s *Server) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	resp := &runtimeapi.ListPodSandboxMetricsResponse{}
	for _, p := range s.pods.List() {
		if p.State == sandbox.Ready {
			resp.PodMetrics = append(resp.PodMetrics, s.podMetrics(p))
		}
	}
	return resp, nil
}

func (s *Server) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	resp, _ := s.ListPodSandboxMetrics(stream.Context(), &runtimeapi.ListPodSandboxMetricsRequest{})
	items := resp.PodMetrics
	for len(items) > 0 {
		n := min(streamBatch, len(items))
		if err := stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: items[:n]}); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}
