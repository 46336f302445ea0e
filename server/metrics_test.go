package server

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestMetricDescriptorsAreUniqueAndCarryTheBaseLabels(t *testing.T) {
	resp, err := call(t, newFixture(t).s, func(ctx context.Context) (*runtimeapi.ListMetricDescriptorsResponse, error) {
		return (&criServer{}).ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Descriptors) != len(metricDefs) {
		t.Fatalf("%d descriptors, want %d", len(resp.Descriptors), len(metricDefs))
	}
	seen := map[string]bool{}
	for _, d := range resp.Descriptors {
		if seen[d.Name] {
			t.Fatalf("descriptor %s twice", d.Name)
		}
		seen[d.Name] = true
		if d.Help == "" || !slices.Equal(d.LabelKeys[:len(baseLabels)], baseLabels) {
			t.Fatalf("descriptor %v", d)
		}
	}
}

func metricsFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.addPod("ready", "team-a", nil)
	f.addPod("stopped", "team-a", nil).State = sandbox.NotReady
	run := f.addContainer("run", "ready", runtime.StateRunning, nil)
	run.Config.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuShares: 512, MemoryLimitInBytes: 1 << 30}}
	f.rt.status["run"] = runtime.Status{State: runtime.StateRunning, Pid: 7, StartedAt: at(50)}
	f.addContainer("done", "ready", runtime.StateExited, nil)
	f.addContainer("old", "stopped", runtime.StateRunning, nil)
	f.img.rootfs["run"] = image.LayerUsage{Bytes: 8192, Inodes: 3}
	return f
}

// Metrics are of Ready pods and their running containers, each series with
// the label values its descriptor declares.
func TestListPodSandboxMetricsOfReadyPodsAndRunningContainers(t *testing.T) {
	f := metricsFixture(t)
	resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
		return f.s.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.PodMetrics) != 1 || resp.PodMetrics[0].PodSandboxId != "ready" {
		t.Fatalf("pod metrics %v, want only the ready pod", resp.PodMetrics)
	}
	cms := resp.PodMetrics[0].ContainerMetrics
	if len(cms) != 1 || cms[0].ContainerId != "run" {
		t.Fatalf("container metrics %v, want only the running container", cms)
	}
	keys := map[string][]string{}
	for _, d := range metricDefs {
		keys[d.name] = d.labels
	}
	values := map[string]uint64{}
	for _, m := range cms[0].Metrics {
		k, ok := keys[m.Name]
		if !ok {
			t.Fatalf("metric %s has no descriptor", m.Name)
		}
		if len(m.LabelValues) != len(k) {
			t.Fatalf("metric %s has label values %q for keys %q", m.Name, m.LabelValues, k)
		}
		if want := []string{"c-run", "pod-ready", "team-a", "reg/app:1"}; !slices.Equal(m.LabelValues[:4], want) {
			t.Fatalf("metric %s base labels %q, want %q", m.Name, m.LabelValues[:4], want)
		}
		if m.MetricType != metricTypes[m.Name] {
			t.Fatalf("metric %s type %v", m.Name, m.MetricType)
		}
		values[m.Name] = m.Value.GetValue()
	}
	for name, want := range map[string]uint64{
		"container_spec_cpu_period":         100000,
		"container_spec_cpu_shares":         512,
		"container_spec_memory_limit_bytes": 1 << 30,
		"container_start_time_seconds":      uint64(at(50).Unix()),
		"container_fs_usage_bytes":          8192,
	} {
		if got, ok := values[name]; !ok || got != want {
			t.Fatalf("%s = %d (present %v), want %d", name, got, ok, want)
		}
	}
	if _, ok := values["container_fs_limit_bytes"]; !ok {
		t.Fatal("no filesystem limit of the graph root")
	}
}

func TestStreamPodSandboxMetricsSendsEverythingInBoundedBatches(t *testing.T) {
	for _, n := range []int{0, 100, 2500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFixture(t)
			for i := range n {
				f.addPod(fmt.Sprintf("p%05d", i), "ns", nil)
			}
			f.addPod("stopped", "ns", nil).State = sandbox.NotReady
			stream := newStream[runtimeapi.StreamPodSandboxMetricsResponse](context.Background())
			if err := callStream(t, f.s, stream, func() error {
				return f.s.StreamPodSandboxMetrics(&runtimeapi.StreamPodSandboxMetricsRequest{}, stream)
			}); err != nil {
				t.Fatal(err)
			}
			var sizes []int
			var all []string
			for _, m := range stream.messages() {
				sizes = append(sizes, len(m.PodSandboxMetrics))
				for _, p := range m.PodSandboxMetrics {
					all = append(all, p.PodSandboxId)
				}
			}
			checkBatches(t, sizes, all, n)
		})
	}
}
