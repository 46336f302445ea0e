package server

import (
	"context"
	"strconv"
	"time"

	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/sandbox"
	"github.com/crivet/crivet/stats"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI metrics (kubelet's PodAndContainerStatsFromCRI): the cAdvisor metric
// names kubelet publishes, read from each container's cgroup, its
// processes, its writable layer and the pod's network namespace. Values
// are integers (CRI Metric.value is a UInt64): seconds are whole seconds.

var baseLabels = []string{"container", "pod", "namespace", "image"}

func withLabels(extra ...string) []string {
	return append(append([]string(nil), baseLabels...), extra...)
}

type metricDef struct {
	name, help string
	typ        runtimeapi.MetricType
	labels     []string
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

var metricDefs = []metricDef{
	{"container_blkio_device_usage_total", "Blkio device bytes usage.", counter, withLabels("device", "major", "minor", "operation")},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, baseLabels},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, baseLabels},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, baseLabels},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", counter, baseLabels},
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counter, baseLabels},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", counter, baseLabels},
	{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, baseLabels},
	{"container_fs_inodes_free", "Number of available inodes.", gauge, withLabels("device")},
	{"container_fs_inodes_total", "Number of inodes.", gauge, withLabels("device")},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, withLabels("device")},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", counter, withLabels("device")},
	{"container_fs_reads_total", "Cumulative count of reads completed.", counter, withLabels("device")},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, withLabels("device")},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", counter, withLabels("device")},
	{"container_fs_writes_total", "Cumulative count of writes completed.", counter, withLabels("device")},
	{"container_last_seen", "Last time a container was seen by the exporter.", gauge, baseLabels},
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, baseLabels},
	{"container_memory_failcnt", "Number of memory usage hits limits.", counter, baseLabels},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", counter, withLabels("failure_type", "scope")},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gauge, baseLabels},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, baseLabels},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, baseLabels},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, baseLabels},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, baseLabels},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, baseLabels},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, baseLabels},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", counter, withLabels("interface")},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", counter, withLabels("interface")},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", counter, withLabels("interface")},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", counter, withLabels("interface")},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", counter, withLabels("interface")},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", counter, withLabels("interface")},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", counter, withLabels("interface")},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", counter, withLabels("interface")},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, baseLabels},
	{"container_processes", "Number of processes running inside the container.", gauge, baseLabels},
	{"container_sockets", "Number of open sockets for the container.", gauge, baseLabels},
	{"container_spec_cpu_period", "CPU period of the container.", gauge, baseLabels},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, baseLabels},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, baseLabels},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, baseLabels},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, baseLabels},
	{"container_threads", "Number of threads running inside the container.", gauge, baseLabels},
	{"container_threads_max", "Maximum number of threads allowed inside the container, 0 when unlimited.", gauge, baseLabels},
}

var metricTypes = func() map[string]runtimeapi.MetricType {
	m := map[string]runtimeapi.MetricType{}
	for _, d := range metricDefs {
		m[d.name] = d.typ
	}
	return m
}()

func (s *criServer) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(metricDefs))
	for _, d := range metricDefs {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labels})
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: out}, nil
}

// metricSet collects metrics sharing base label values.
type metricSet struct {
	now  int64
	base []string
	out  []*runtimeapi.Metric
}

func (m *metricSet) add(name string, v uint64, extra ...string) {
	m.out = append(m.out, &runtimeapi.Metric{Name: name, Timestamp: m.now, MetricType: metricTypes[name],
		LabelValues: append(append([]string(nil), m.base...), extra...), Value: &runtimeapi.UInt64Value{Value: v}})
}

func (s *criServer) containerMetrics(c *sandbox.Container, pod *sandbox.Pod, now time.Time) []*runtimeapi.Metric {
	md := pod.Config.GetMetadata()
	m := &metricSet{now: now.UnixNano(), base: []string{c.Config.GetMetadata().GetName(), md.GetName(), md.GetNamespace(), c.Config.GetImage().GetImage()}}
	addCgroupMetrics(m, c.CgroupPath)
	res := c.Config.GetLinux().GetResources()
	m.add("container_spec_cpu_period", uint64(res.GetCpuPeriod()))
	m.add("container_spec_cpu_shares", uint64(res.GetCpuShares()))
	m.add("container_spec_memory_limit_bytes", uint64(res.GetMemoryLimitInBytes()))
	m.add("container_spec_memory_swap_limit_bytes", uint64(res.GetMemorySwapLimitInBytes()))
	m.add("container_last_seen", uint64(now.Unix()))
	if st, err := s.rt.Status(context.Background(), c.ID); err == nil && !st.StartedAt.IsZero() {
		m.add("container_start_time_seconds", uint64(st.StartedAt.Unix()))
	}
	// The writable layer, on the store's filesystem.
	root := s.images.GraphRoot()
	var fs unix.Statfs_t
	if unix.Statfs(root, &fs) == nil {
		m.add("container_fs_inodes_free", fs.Ffree, root)
		m.add("container_fs_inodes_total", fs.Files, root)
		m.add("container_fs_limit_bytes", fs.Blocks*uint64(fs.Bsize), root)
	}
	if used, err := s.images.RootfsUsage(c.ID); err == nil {
		m.add("container_fs_usage_bytes", used.Bytes, root)
	}
	return m.out
}

// addCgroupMetrics maps one read of a container's cgroup to cAdvisor's
// metric names (whole seconds: CRI metric values are integers).
func addCgroupMetrics(m *metricSet, path string) {
	c, err := stats.ReadCgroup(path, stats.Options{Processes: true})
	if err != nil {
		return
	}
	m.add("container_cpu_usage_seconds_total", c.CPU.Usage/1e9)
	m.add("container_cpu_user_seconds_total", c.CPU.User/1e9)
	m.add("container_cpu_system_seconds_total", c.CPU.System/1e9)
	m.add("container_cpu_cfs_periods_total", c.CPU.Periods)
	m.add("container_cpu_cfs_throttled_periods_total", c.CPU.ThrottledPeriods)
	m.add("container_cpu_cfs_throttled_seconds_total", c.CPU.Throttled/1e9)
	mem := c.Memory
	m.add("container_memory_usage_bytes", mem.Usage)
	m.add("container_memory_working_set_bytes", mem.WorkingSet)
	m.add("container_memory_max_usage_bytes", mem.MaxUsage)
	m.add("container_memory_failcnt", mem.Failcnt)
	m.add("container_memory_rss", mem.RSS)
	m.add("container_memory_cache", mem.Cache)
	m.add("container_memory_mapped_file", mem.MappedFile)
	m.add("container_memory_kernel_usage", mem.Kernel)
	m.add("container_memory_swap", mem.Swap)
	m.add("container_memory_failures_total", mem.PageFaults, "pgfault", "container")
	m.add("container_memory_failures_total", mem.MajorFaults, "pgmajfault", "container")
	m.add("container_oom_events_total", c.OOMKills)
	m.add("container_processes", c.Pids)
	m.add("container_threads_max", c.PidsLimit)
	dev := func(e stats.IO) string {
		return strconv.FormatUint(e.Major, 10) + ":" + strconv.FormatUint(e.Minor, 10)
	}
	for _, e := range c.IOBytes {
		m.add("container_blkio_device_usage_total", e.Value, e.Device, strconv.FormatUint(e.Major, 10), strconv.FormatUint(e.Minor, 10), e.Op)
		switch e.Op {
		case "Read":
			m.add("container_fs_reads_bytes_total", e.Value, dev(e))
		case "Write":
			m.add("container_fs_writes_bytes_total", e.Value, dev(e))
		}
	}
	for _, e := range c.IOOps {
		switch e.Op {
		case "Read":
			m.add("container_fs_reads_total", e.Value, dev(e))
		case "Write":
			m.add("container_fs_writes_total", e.Value, dev(e))
		}
	}
	m.add("container_file_descriptors", c.FDs)
	m.add("container_sockets", c.Sockets)
	m.add("container_threads", c.Threads)
}

func networkMetrics(m *metricSet, netns string) {
	for _, i := range stats.NetNSInterfaces(netns) {
		m.add("container_network_receive_bytes_total", i.RxBytes, i.Name)
		m.add("container_network_receive_packets_total", i.RxPackets, i.Name)
		m.add("container_network_receive_errors_total", i.RxErrors, i.Name)
		m.add("container_network_receive_packets_dropped_total", i.RxDropped, i.Name)
		m.add("container_network_transmit_bytes_total", i.TxBytes, i.Name)
		m.add("container_network_transmit_packets_total", i.TxPackets, i.Name)
		m.add("container_network_transmit_errors_total", i.TxErrors, i.Name)
		m.add("container_network_transmit_packets_dropped_total", i.TxDropped, i.Name)
	}
}

func (s *criServer) podMetrics(p *sandbox.Pod) *runtimeapi.PodSandboxMetrics {
	now := time.Now()
	md := p.Config.GetMetadata()
	out := &runtimeapi.PodSandboxMetrics{PodSandboxId: p.ID}
	// Pod-level series carry the container label "POD", as cAdvisor's do.
	pm := &metricSet{now: now.UnixNano(), base: []string{"POD", md.GetName(), md.GetNamespace(), ""}}
	networkMetrics(pm, p.NetNS)
	out.Metrics = pm.out
	for _, c := range s.pods.Containers(p.ID) {
		if lifecycle.Running(s.rt.Status(context.Background(), c.ID)) != nil {
			continue
		}
		out.ContainerMetrics = append(out.ContainerMetrics, &runtimeapi.ContainerMetrics{
			ContainerId: c.ID, Metrics: s.containerMetrics(c, p, now),
		})
	}
	return out
}

func (s *criServer) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	resp := &runtimeapi.ListPodSandboxMetricsResponse{}
	for _, p := range s.pods.List() {
		if p.State == sandbox.Ready {
			resp.PodMetrics = append(resp.PodMetrics, s.podMetrics(p))
		}
	}
	return resp, nil
}

func (s *criServer) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	resp, _ := s.ListPodSandboxMetrics(stream.Context(), &runtimeapi.ListPodSandboxMetricsRequest{})
	return sendBatches(resp.PodMetrics, func(b []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: b})
	})
}
