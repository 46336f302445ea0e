package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func podStatus(t *testing.T, f *fixture, id string) (*runtimeapi.PodSandboxStatusResponse, error) {
	return call(t, f.s, func(ctx context.Context) (*runtimeapi.PodSandboxStatusResponse, error) {
		return f.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	})
}

func TestPodSandboxStatusOfMissingOrAmbiguousID(t *testing.T) {
	f := newFixture(t)
	f.addPod("pod1", "ns", nil)
	f.addPod("pod2", "ns", nil)
	_, err := podStatus(t, f, "gone")
	wantCode(t, err, codes.NotFound)
	_, err = podStatus(t, f, "pod")
	wantCode(t, err, codes.InvalidArgument)
}

func TestPodSandboxStatusReportsTheStoredPodAndOnlyItsContainers(t *testing.T) {
	f := newFixture(t)
	p := f.addPod("pod1", "team-a", map[string]string{"app": "web"})
	p.IPs = []string{"10.0.0.5", "fd00::5"}
	p.State = sandbox.NotReady
	f.addPod("pod2", "team-a", nil)
	f.addContainer("c1", "pod1", runtime.StateRunning, nil)
	f.addContainer("c2", "pod1", "", nil) // no process state: still listed, UNKNOWN
	f.addContainer("c3", "pod2", runtime.StateRunning, nil)
	resp, err := podStatus(t, f, "pod1")
	if err != nil {
		t.Fatal(err)
	}
	st := resp.Status
	if st.Id != "pod1" || st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || st.Metadata.GetNamespace() != "team-a" ||
		st.Labels["app"] != "web" || st.RuntimeHandler != defaultHandler || st.CreatedAt != p.CreatedAt.UnixNano() {
		t.Fatalf("status %v", st)
	}
	if st.Network.GetIp() != "10.0.0.5" || len(st.Network.AdditionalIps) != 1 || st.Network.AdditionalIps[0].Ip != "fd00::5" {
		t.Fatalf("network %v, want primary 10.0.0.5 and fd00::5", st.Network)
	}
	got := ids(resp.ContainersStatuses, (*runtimeapi.ContainerStatus).GetId)
	if !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("container statuses %q, want the pod's c1 c2", got)
	}
	if resp.Timestamp == 0 {
		t.Fatal("no timestamp")
	}
}

func TestPodSandboxStatusOfAHostNetworkPodHasNoNetwork(t *testing.T) {
	f := newFixture(t)
	f.addPod("pod1", "ns", nil)
	resp, err := podStatus(t, f, "pod1")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status.Network != nil || resp.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("network %v state %v", resp.Status.Network, resp.Status.State)
	}
}

func TestListPodSandboxFilters(t *testing.T) {
	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	for _, c := range []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{"no filter", nil, []string{"aa1", "aa2", "bb1"}},
		{"id prefix", &runtimeapi.PodSandboxFilter{Id: "aa"}, []string{"aa1", "aa2"}},
		{"full id", &runtimeapi.PodSandboxFilter{Id: "aa2"}, []string{"aa2"}},
		{"ready", &runtimeapi.PodSandboxFilter{State: ready}, []string{"aa1", "bb1"}},
		{"not ready", &runtimeapi.PodSandboxFilter{State: notReady}, []string{"aa2"}},
		{"labels", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web"}}, []string{"aa1", "aa2"}},
		{"every label must match", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web", "tier": "x"}}, nil},
		{"combined", &runtimeapi.PodSandboxFilter{Id: "a", State: ready, LabelSelector: map[string]string{"app": "web"}}, []string{"aa1"}},
		{"no match", &runtimeapi.PodSandboxFilter{Id: "zz"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.addPod("aa1", "ns", map[string]string{"app": "web"})
			f.addPod("aa2", "ns", map[string]string{"app": "web"}).State = sandbox.NotReady
			f.addPod("bb1", "ns", map[string]string{"app": "db"})
			resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ListPodSandboxResponse, error) {
				return f.s.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: c.filter})
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(resp.Items, (*runtimeapi.PodSandbox).GetId); !slices.Equal(got, c.want) {
				t.Fatalf("listed %q, want %q", got, c.want)
			}
		})
	}
}

func TestListPodSandboxIsNewestFirst(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"p0", "p1", "p2"} {
		f.addPod(id, "ns", nil)
	}
	resp, _ := f.s.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{})
	var got []string
	for _, p := range resp.Items {
		got = append(got, p.Id)
	}
	if want := []string{"p2", "p1", "p0"}; !slices.Equal(got, want) {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestStreamPodSandboxesSendsEverythingInBoundedBatches(t *testing.T) {
	for _, n := range []int{0, 99, 100, 2500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFixture(t)
			for i := range n {
				f.addPod(fmt.Sprintf("p%05d", i), "ns", map[string]string{"keep": "yes"})
			}
			f.addPod("other", "ns", nil) // filtered out
			stream := newStream[runtimeapi.StreamPodSandboxesResponse](context.Background())
			if err := callStream(t, f.s, stream, func() error {
				return f.s.StreamPodSandboxes(&runtimeapi.StreamPodSandboxesRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"keep": "yes"}}}, stream)
			}); err != nil {
				t.Fatal(err)
			}
			var sizes []int
			var all []string
			for _, m := range stream.messages() {
				sizes = append(sizes, len(m.PodSandboxes))
				for _, p := range m.PodSandboxes {
					all = append(all, p.Id)
				}
			}
			checkBatches(t, sizes, all, n)
		})
	}
}

func TestSendBatchesStopsAtTheFirstSendError(t *testing.T) {
	items := make([]int, 350)
	sends := 0
	boom := errors.New("boom")
	err := sendBatches(items, func(b []int) error {
		sends++
		if sends == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || sends != 2 {
		t.Fatalf("err %v after %d sends, want boom after 2", err, sends)
	}
}
