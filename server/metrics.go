package server

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/crivet/crivet/sandbox"
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

func (s *Server) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
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

func (s *Server) containerMetrics(c *sandbox.Container, pod *sandbox.Pod, now time.Time) []*runtimeapi.Metric {
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
	root := s.images.Storage().GraphRoot()
	var fs unix.Statfs_t
	if unix.Statfs(root, &fs) == nil {
		m.add("container_fs_inodes_free", fs.Ffree, root)
		m.add("container_fs_inodes_total", fs.Files, root)
		m.add("container_fs_limit_bytes", fs.Blocks*uint64(fs.Bsize), root)
	}
	if used, err := s.images.RootfsUsage(c.ID); err == nil {
		m.add("container_fs_usage_bytes", used, root)
	}
	return m.out
}

func addCgroupMetrics(m *metricSet, path string) {
	if path == "" {
		return
	}
	var procsFile string
	if cgroups.Mode() == cgroups.Unified {
		mgr, err := cgroup2.Load(path)
		if err != nil {
			return
		}
		st, err := mgr.Stat()
		if err != nil {
			return
		}
		if cpu := st.CPU; cpu != nil {
			m.add("container_cpu_usage_seconds_total", cpu.UsageUsec/1e6)
			m.add("container_cpu_user_seconds_total", cpu.UserUsec/1e6)
			m.add("container_cpu_system_seconds_total", cpu.SystemUsec/1e6)
			m.add("container_cpu_cfs_periods_total", cpu.NrPeriods)
			m.add("container_cpu_cfs_throttled_periods_total", cpu.NrThrottled)
			m.add("container_cpu_cfs_throttled_seconds_total", cpu.ThrottledUsec/1e6)
		}
		if mem := st.Memory; mem != nil {
			m.add("container_memory_usage_bytes", mem.Usage)
			m.add("container_memory_working_set_bytes", sub(mem.Usage, mem.InactiveFile))
			m.add("container_memory_rss", mem.Anon)
			m.add("container_memory_cache", mem.File)
			m.add("container_memory_mapped_file", mem.FileMapped)
			m.add("container_memory_kernel_usage", mem.KernelStack+mem.Slab)
			m.add("container_memory_max_usage_bytes", mem.MaxUsage)
			m.add("container_memory_swap", mem.SwapUsage)
			m.add("container_memory_failcnt", 0)
			m.add("container_memory_failures_total", mem.Pgfault, "pgfault", "container")
			m.add("container_memory_failures_total", mem.Pgmajfault, "pgmajfault", "container")
		}
		if ev := st.MemoryEvents; ev != nil {
			m.add("container_oom_events_total", ev.OomKill)
		}
		if p := st.Pids; p != nil {
			m.add("container_processes", p.Current)
			m.add("container_threads_max", p.Limit)
		}
		procsFile = filepath.Join("/sys/fs/cgroup", path, "cgroup.procs")
	} else {
		cg, err := cgroup1.Load(cgroup1.StaticPath(path))
		if err != nil {
			return
		}
		st, err := cg.Stat(cgroup1.IgnoreNotExist)
		if err != nil {
			return
		}
		if cpu := st.CPU; cpu != nil {
			if u := cpu.Usage; u != nil {
				m.add("container_cpu_usage_seconds_total", u.Total/1e9)
				m.add("container_cpu_user_seconds_total", u.User/1e9)
				m.add("container_cpu_system_seconds_total", u.Kernel/1e9)
			}
			if t := cpu.Throttling; t != nil {
				m.add("container_cpu_cfs_periods_total", t.Periods)
				m.add("container_cpu_cfs_throttled_periods_total", t.ThrottledPeriods)
				m.add("container_cpu_cfs_throttled_seconds_total", t.ThrottledTime/1e9)
			}
		}
		if mem := st.Memory; mem != nil && mem.Usage != nil {
			m.add("container_memory_usage_bytes", mem.Usage.Usage)
			m.add("container_memory_working_set_bytes", sub(mem.Usage.Usage, mem.TotalInactiveFile))
			m.add("container_memory_max_usage_bytes", mem.Usage.Max)
			m.add("container_memory_failcnt", mem.Usage.Failcnt)
			m.add("container_memory_rss", mem.TotalRSS)
			m.add("container_memory_cache", mem.TotalCache)
			m.add("container_memory_mapped_file", mem.TotalMappedFile)
			var kernel, swap uint64
			if mem.Kernel != nil {
				kernel = mem.Kernel.Usage
			}
			if mem.Swap != nil {
				swap = sub(mem.Swap.Usage, mem.Usage.Usage) // memsw counts memory + swap
			}
			m.add("container_memory_kernel_usage", kernel)
			m.add("container_memory_swap", swap)
			m.add("container_memory_failures_total", mem.TotalPgFault, "pgfault", "container")
			m.add("container_memory_failures_total", mem.TotalPgMajFault, "pgmajfault", "container")
		}
		m.add("container_oom_events_total", oomKills(filepath.Join("/sys/fs/cgroup/memory", path, "memory.oom_control")))
		if p := st.Pids; p != nil {
			m.add("container_processes", p.Current)
			m.add("container_threads_max", p.Limit)
		}
		if b := st.Blkio; b != nil {
			dev := func(major, minor uint64) string {
				return strconv.FormatUint(major, 10) + ":" + strconv.FormatUint(minor, 10)
			}
			for _, e := range b.IoServiceBytesRecursive {
				m.add("container_blkio_device_usage_total", e.Value, e.Device, strconv.FormatUint(e.Major, 10), strconv.FormatUint(e.Minor, 10), e.Op)
				switch e.Op {
				case "Read":
					m.add("container_fs_reads_bytes_total", e.Value, dev(e.Major, e.Minor))
				case "Write":
					m.add("container_fs_writes_bytes_total", e.Value, dev(e.Major, e.Minor))
				}
			}
			for _, e := range b.IoServicedRecursive {
				switch e.Op {
				case "Read":
					m.add("container_fs_reads_total", e.Value, dev(e.Major, e.Minor))
				case "Write":
					m.add("container_fs_writes_total", e.Value, dev(e.Major, e.Minor))
				}
			}
		}
		procsFile = filepath.Join("/sys/fs/cgroup/pids", path, "cgroup.procs")
	}
	fds, sockets, threads := processCounts(procsFile)
	m.add("container_file_descriptors", fds)
	m.add("container_sockets", sockets)
	m.add("container_threads", threads)
}

// oomKills reads the "oom_kill" count of a v1 memory.oom_control file.
func oomKills(path string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == "oom_kill" {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

// processCounts counts open descriptors, sockets among them, and threads
// of the processes listed in a cgroup.procs file.
func processCounts(procsFile string) (fds, sockets, threads uint64) {
	data, err := os.ReadFile(procsFile)
	if err != nil {
		return
	}
	for _, pid := range strings.Fields(string(data)) {
		ents, _ := os.ReadDir("/proc/" + pid + "/fd")
		for _, e := range ents {
			fds++
			if l, err := os.Readlink("/proc/" + pid + "/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
				sockets++
			}
		}
		tasks, _ := os.ReadDir("/proc/" + pid + "/task")
		threads += uint64(len(tasks))
	}
	return
}

// ifaceStats are one interface's counters from /proc/net/dev.
type ifaceStats struct {
	name                                    string
	rxBytes, rxPackets, rxErrors, rxDropped uint64
	txBytes, txPackets, txErrors, txDropped uint64
}

// podInterfaces reads the pod's interfaces (lo excluded) inside its
// network namespace (the reading thread's, hence thread-self).
func podInterfaces(netns string) []ifaceStats {
	if netns == "" {
		return nil
	}
	var data []byte
	if err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	}); err != nil {
		return nil
	}
	var out []ifaceStats
	lines := strings.Split(string(data), "\n")
	if len(lines) < 2 {
		return nil
	}
	for _, line := range lines[2:] {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 12 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		out = append(out, ifaceStats{name: name, rxBytes: n(0), rxPackets: n(1), rxErrors: n(2), rxDropped: n(3),
			txBytes: n(8), txPackets: n(9), txErrors: n(10), txDropped: n(11)})
	}
	return out
}

func networkMetrics(m *metricSet, netns string) {
	for _, i := range podInterfaces(netns) {
		m.add("container_network_receive_bytes_total", i.rxBytes, i.name)
		m.add("container_network_receive_packets_total", i.rxPackets, i.name)
		m.add("container_network_receive_errors_total", i.rxErrors, i.name)
		m.add("container_network_receive_packets_dropped_total", i.rxDropped, i.name)
		m.add("container_network_transmit_bytes_total", i.txBytes, i.name)
		m.add("container_network_transmit_packets_total", i.txPackets, i.name)
		m.add("container_network_transmit_errors_total", i.txErrors, i.name)
		m.add("container_network_transmit_packets_dropped_total", i.txDropped, i.name)
	}
}

func (s *Server) podMetrics(p *sandbox.Pod) *runtimeapi.PodSandboxMetrics {
	now := time.Now()
	md := p.Config.GetMetadata()
	out := &runtimeapi.PodSandboxMetrics{PodSandboxId: p.ID}
	// Pod-level series carry the container label "POD", as cAdvisor's do.
	pm := &metricSet{now: now.UnixNano(), base: []string{"POD", md.GetName(), md.GetNamespace(), ""}}
	networkMetrics(pm, p.NetNS)
	out.Metrics = pm.out
	for _, c := range s.pods.Containers(p.ID) {
		if st, err := s.rt.Status(context.Background(), c.ID); err != nil || st.State != "running" {
			continue
		}
		out.ContainerMetrics = append(out.ContainerMetrics, &runtimeapi.ContainerMetrics{
			ContainerId: c.ID, Metrics: s.containerMetrics(c, p, now),
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
	return sendBatches(resp.PodMetrics, func(b []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: b})
	})
}
