package server

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/runtime"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The fixtures' containers and pods have no cgroup path: the handlers read
// no cgroup of this host, and usage comes from the image service only.

func statsFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.addPod("pa1", "ns", map[string]string{"app": "web"})
	f.addPod("pa2", "ns", map[string]string{"app": "web", "tier": "x"})
	f.addPod("pb1", "ns", map[string]string{"app": "db"})
	f.addContainer("ca1", "pa1", runtime.StateRunning, map[string]string{"app": "web"})
	f.addContainer("ca2", "pa1", runtime.StateExited, map[string]string{"app": "web"})
	f.addContainer("ca3", "pa2", runtime.StateRunning, map[string]string{"app": "web", "tier": "x"})
	f.addContainer("cb1", "pb1", runtime.StateRunning, map[string]string{"app": "db"})
	f.addContainer("cb2", "pb1", "", nil)
	f.img.rootfs["ca1"] = image.LayerUsage{Bytes: 4096, Inodes: 7}
	f.img.rootfs["ca3"] = image.LayerUsage{Bytes: 512} // a driver that cannot count inodes
	return f
}

func TestContainerStatsOfMissingIDIsNotFound(t *testing.T) {
	f := statsFixture(t)
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ContainerStatsResponse, error) {
		return f.s.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: "gone"})
	})
	wantCode(t, err, codes.NotFound)
}

// The writable layer's bytes and inodes are what the image service
// measured; inodes_used stays unset when the driver could not count them
// (kubelet then shows no rootfs inodes rather than a false 0).
func TestContainerStatsReportsTheWritableLayerWhenKnown(t *testing.T) {
	f := statsFixture(t)
	for id, want := range map[string]image.LayerUsage{"ca1": {Bytes: 4096, Inodes: 7}, "ca3": {Bytes: 512}, "cb1": {}} {
		resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ContainerStatsResponse, error) {
			return f.s.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
		})
		if err != nil {
			t.Fatal(err)
		}
		st := resp.Stats
		if st.Attributes.GetId() != id || st.Attributes.GetMetadata().GetName() != "c-"+id || st.Cpu == nil || st.Memory == nil {
			t.Fatalf("%s: stats %v", id, st)
		}
		if want.Bytes == 0 {
			if st.WritableLayer != nil {
				t.Fatalf("%s: writable layer %v with no usage known", id, st.WritableLayer)
			}
			continue
		}
		wl := st.WritableLayer
		if wl.GetUsedBytes().GetValue() != want.Bytes || wl.GetFsId().GetMountpoint() != f.img.graphRoot {
			t.Fatalf("%s: writable layer %v", id, wl)
		}
		if want.Inodes == 0 && wl.InodesUsed != nil {
			t.Errorf("%s: inodes_used %v, want unset", id, wl.InodesUsed)
		}
		if want.Inodes != 0 && wl.GetInodesUsed().GetValue() != want.Inodes {
			t.Errorf("%s: inodes_used %v, want %d", id, wl.InodesUsed, want.Inodes)
		}
	}
}

// Only running containers have stats in the list.
func TestListContainerStatsFilters(t *testing.T) {
	for _, c := range []struct {
		name   string
		filter *runtimeapi.ContainerStatsFilter
		want   []string
	}{
		{"no filter: the running ones", nil, []string{"ca1", "ca3", "cb1"}},
		{"id prefix", &runtimeapi.ContainerStatsFilter{Id: "ca"}, []string{"ca1", "ca3"}},
		{"id of an exited container", &runtimeapi.ContainerStatsFilter{Id: "ca2"}, nil},
		{"pod", &runtimeapi.ContainerStatsFilter{PodSandboxId: "pa1"}, []string{"ca1"}},
		{"labels", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"app": "web"}}, []string{"ca1", "ca3"}},
		{"every label", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"app": "web", "tier": "x"}}, []string{"ca3"}},
		{"combined, no match", &runtimeapi.ContainerStatsFilter{PodSandboxId: "pb1", LabelSelector: map[string]string{"app": "web"}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := statsFixture(t)
			resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ListContainerStatsResponse, error) {
				return f.s.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: c.filter})
			})
			if err != nil {
				t.Fatal(err)
			}
			got := ids(resp.Stats, func(s *runtimeapi.ContainerStats) string { return s.Attributes.GetId() })
			if !slices.Equal(got, c.want) {
				t.Fatalf("stats of %q, want %q", got, c.want)
			}
		})
	}
}

func TestPodSandboxStatsOfMissingIDIsNotFound(t *testing.T) {
	f := statsFixture(t)
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.PodSandboxStatsResponse, error) {
		return f.s.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "gone"})
	})
	wantCode(t, err, codes.NotFound)
}

func TestPodSandboxStatsHasEveryContainerOfThePod(t *testing.T) {
	f := statsFixture(t)
	resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.PodSandboxStatsResponse, error) {
		return f.s.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "pa"})
	})
	wantCode(t, err, codes.InvalidArgument) // ambiguous: pa1, pa2
	resp, err = call(t, f.s, func(ctx context.Context) (*runtimeapi.PodSandboxStatsResponse, error) {
		return f.s.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "pa1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.Stats
	if st.Attributes.GetId() != "pa1" || st.Attributes.GetLabels()["app"] != "web" {
		t.Fatalf("attributes %v", st.Attributes)
	}
	got := ids(st.Linux.GetContainers(), func(s *runtimeapi.ContainerStats) string { return s.Attributes.GetId() })
	if !slices.Equal(got, []string{"ca1", "ca2"}) {
		t.Fatalf("container stats %q, want ca1 ca2", got)
	}
	if st.Linux.Cpu.GetUsageCoreNanoSeconds() == nil || st.Linux.Memory.GetWorkingSetBytes() == nil || st.Linux.Process.GetProcessCount() == nil {
		t.Fatalf("pod usage not reported: %v", st.Linux)
	}
	if st.Linux.Network != nil {
		t.Fatalf("a pod without a network namespace has network stats %v", st.Linux.Network)
	}
}

func TestListPodSandboxStatsFilters(t *testing.T) {
	for _, c := range []struct {
		name   string
		filter *runtimeapi.PodSandboxStatsFilter
		want   []string
	}{
		{"no filter", nil, []string{"pa1", "pa2", "pb1"}},
		{"id prefix", &runtimeapi.PodSandboxStatsFilter{Id: "pa"}, []string{"pa1", "pa2"}},
		{"full id", &runtimeapi.PodSandboxStatsFilter{Id: "pb1"}, []string{"pb1"}},
		{"labels", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "web"}}, []string{"pa1", "pa2"}},
		{"every label", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "web", "tier": "x"}}, []string{"pa2"}},
		{"no match", &runtimeapi.PodSandboxStatsFilter{Id: "zz"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := statsFixture(t)
			resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ListPodSandboxStatsResponse, error) {
				return f.s.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: c.filter})
			})
			if err != nil {
				t.Fatal(err)
			}
			got := ids(resp.Stats, func(s *runtimeapi.PodSandboxStats) string { return s.Attributes.GetId() })
			if !slices.Equal(got, c.want) {
				t.Fatalf("stats of %q, want %q", got, c.want)
			}
		})
	}
}

func TestStreamContainerStatsSendsEverythingInBoundedBatches(t *testing.T) {
	for _, n := range []int{0, 100, 2500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFixture(t)
			f.addPod("p1", "ns", nil)
			for i := range n {
				f.addContainer(fmt.Sprintf("c%05d", i), "p1", runtime.StateRunning, nil)
			}
			f.addContainer("exited", "p1", runtime.StateExited, nil) // not listed
			stream := newStream[runtimeapi.StreamContainerStatsResponse](context.Background())
			if err := callStream(t, f.s, stream, func() error {
				return f.s.StreamContainerStats(&runtimeapi.StreamContainerStatsRequest{}, stream)
			}); err != nil {
				t.Fatal(err)
			}
			var sizes []int
			var all []string
			for _, m := range stream.messages() {
				sizes = append(sizes, len(m.ContainerStats))
				for _, s := range m.ContainerStats {
					all = append(all, s.Attributes.GetId())
				}
			}
			checkBatches(t, sizes, all, n)
		})
	}
}

func TestStreamPodSandboxStatsSendsEverythingInBoundedBatches(t *testing.T) {
	for _, n := range []int{0, 101, 2500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFixture(t)
			for i := range n {
				f.addPod(fmt.Sprintf("p%05d", i), "ns", nil)
			}
			f.addPod("other", "ns", nil) // filtered out
			stream := newStream[runtimeapi.StreamPodSandboxStatsResponse](context.Background())
			if err := callStream(t, f.s, stream, func() error {
				return f.s.StreamPodSandboxStats(&runtimeapi.StreamPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: "p"}}, stream)
			}); err != nil {
				t.Fatal(err)
			}
			var sizes []int
			var all []string
			for _, m := range stream.messages() {
				sizes = append(sizes, len(m.PodSandboxStats))
				for _, s := range m.PodSandboxStats {
					all = append(all, s.Attributes.GetId())
				}
			}
			checkBatches(t, sizes, all, n)
		})
	}
}
