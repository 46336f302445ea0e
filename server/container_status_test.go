package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/crivet/crivet/oci/runtime"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func containerStatus(t *testing.T, f *fixture, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	return call(t, f.s, func(ctx context.Context) (*runtimeapi.ContainerStatusResponse, error) {
		return f.s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: verbose})
	})
}

func TestContainerStatusOfMissingIDIsNotFound(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("c1", "p1", runtime.StateRunning, nil)
	_, err := containerStatus(t, f, "gone", false)
	wantCode(t, err, codes.NotFound)
}

func TestContainerStatusMapsProcessState(t *testing.T) {
	for _, c := range []struct {
		name     string
		st       *runtime.Status // nil: no process state
		state    runtimeapi.ContainerState
		exitCode int32
		finished bool
		reason   string
	}{
		{"created", &runtime.Status{State: runtime.StateCreated, Pid: 9}, runtimeapi.ContainerState_CONTAINER_CREATED, 0, false, ""},
		{"running", &runtime.Status{State: runtime.StateRunning, Pid: 9, StartedAt: at(1)}, runtimeapi.ContainerState_CONTAINER_RUNNING, 0, false, ""},
		{"exited", &runtime.Status{State: runtime.StateExited, ExitCode: 137, StartedAt: at(1), FinishedAt: at(2), Reason: "OOMKilled"}, runtimeapi.ContainerState_CONTAINER_EXITED, 137, true, "OOMKilled"},
		{"exit code of a live one is not reported", &runtime.Status{State: runtime.StateRunning, ExitCode: 5, FinishedAt: at(2)}, runtimeapi.ContainerState_CONTAINER_RUNNING, 0, false, ""},
		{"no process state is UNKNOWN, not an error", nil, runtimeapi.ContainerState_CONTAINER_UNKNOWN, 0, false, "Unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.addPod("p1", "ns", nil)
			ctr := f.addContainer("c1", "p1", "", map[string]string{"app": "web"})
			ctr.LogPath, ctr.UID = "/var/log/pods/c1.log", 1000
			if c.st != nil {
				f.rt.status["c1"] = *c.st
			}
			resp, err := containerStatus(t, f, "c1", false)
			if err != nil {
				t.Fatal(err)
			}
			s := resp.Status
			if s.Id != "c1" || s.State != c.state || s.ExitCode != c.exitCode || s.Reason != c.reason {
				t.Fatalf("status id %s state %v exit %d reason %q", s.Id, s.State, s.ExitCode, s.Reason)
			}
			if (s.FinishedAt != 0) != c.finished {
				t.Fatalf("finishedAt %d, want set=%v", s.FinishedAt, c.finished)
			}
			if c.st != nil && !c.st.StartedAt.IsZero() && s.StartedAt != c.st.StartedAt.UnixNano() {
				t.Fatalf("startedAt %d", s.StartedAt)
			}
			if s.Labels["app"] != "web" || s.LogPath != ctr.LogPath || s.User.GetLinux().GetUid() != 1000 || s.ImageRef != "sha256:img" || s.Image.GetImage() != "reg/app:1" {
				t.Fatalf("record not reported: %v", s)
			}
			if resp.Info != nil {
				t.Fatalf("non-verbose status has info %v", resp.Info)
			}
		})
	}
}

func TestContainerStatusProcessErrorIsAnError(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("c1", "p1", runtime.StateRunning, nil)
	f.rt.statusErr = map[string]error{"c1": fmt.Errorf("runc state: %w", context.DeadlineExceeded)}
	_, err := containerStatus(t, f, "c1", false)
	wantCode(t, err, codes.DeadlineExceeded)
}

func TestVerboseContainerStatusReportsPid(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("c1", "p1", runtime.StateRunning, nil)
	resp, err := containerStatus(t, f, "c1", true)
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatalf("info %q: %v", resp.Info["info"], err)
	}
	if info["pid"] != float64(42) || info["podID"] != "p1" {
		t.Fatalf("verbose info %v lacks pid 42 or podID", info)
	}
}

func listFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addPod("p2", "ns", nil)
	f.addContainer("aa1", "p1", runtime.StateRunning, map[string]string{"app": "web", "tier": "front"})
	f.addContainer("aa2", "p1", runtime.StateExited, map[string]string{"app": "web"})
	f.addContainer("bb1", "p2", runtime.StateCreated, map[string]string{"app": "db"})
	f.addContainer("bb2", "p2", "", map[string]string{"app": "db"}) // process state gone
	f.addContainer("cc1", "p2", runtime.StateRunning, nil)
	f.rt.statusErr = map[string]error{"cc1": errors.New("runc state: broken")}
	return f
}

func ids[T any](items []T, id func(T) string) []string {
	var out []string
	for _, it := range items {
		out = append(out, id(it))
	}
	slices.Sort(out)
	return out
}

func TestListContainersFilters(t *testing.T) {
	state := func(s runtimeapi.ContainerState) *runtimeapi.ContainerStateValue {
		return &runtimeapi.ContainerStateValue{State: s}
	}
	for _, c := range []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   []string
	}{
		{"no filter: all but the one whose state cannot be read", nil, []string{"aa1", "aa2", "bb1", "bb2"}},
		{"empty filter", &runtimeapi.ContainerFilter{}, []string{"aa1", "aa2", "bb1", "bb2"}},
		{"id prefix", &runtimeapi.ContainerFilter{Id: "aa"}, []string{"aa1", "aa2"}},
		{"full id", &runtimeapi.ContainerFilter{Id: "bb1"}, []string{"bb1"}},
		{"state running", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_RUNNING)}, []string{"aa1"}},
		{"state exited", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_EXITED)}, []string{"aa2"}},
		{"state unknown", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_UNKNOWN)}, []string{"bb2"}},
		{"pod id", &runtimeapi.ContainerFilter{PodSandboxId: "p2"}, []string{"bb1", "bb2"}},
		{"label selector", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "web"}}, []string{"aa1", "aa2"}},
		{"every label must match", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "web", "tier": "front"}}, []string{"aa1"}},
		{"combined", &runtimeapi.ContainerFilter{PodSandboxId: "p1", State: state(runtimeapi.ContainerState_CONTAINER_EXITED), LabelSelector: map[string]string{"app": "web"}}, []string{"aa2"}},
		{"no match", &runtimeapi.ContainerFilter{Id: "zz"}, nil},
		{"unknown pod", &runtimeapi.ContainerFilter{PodSandboxId: "p9"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := listFixture(t)
			resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ListContainersResponse, error) {
				return f.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: c.filter})
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(resp.Containers, (*runtimeapi.Container).GetId); !slices.Equal(got, c.want) {
				t.Fatalf("listed %q, want %q", got, c.want)
			}
		})
	}
}

func TestListContainersIsNewestFirstWithPodAndImage(t *testing.T) {
	f := listFixture(t)
	resp, err := f.s.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range resp.Containers {
		got = append(got, c.Id)
		if c.PodSandboxId == "" || c.Image.GetImage() != "reg/app:1" || c.ImageRef != "sha256:img" || c.Metadata.GetName() != "c-"+c.Id {
			t.Fatalf("container %v misses its record's fields", c)
		}
	}
	if want := []string{"bb2", "bb1", "aa2", "aa1"}; !slices.Equal(got, want) {
		t.Fatalf("order %q, want newest first %q", got, want)
	}
}

func TestStreamContainersSendsEverythingInBoundedBatches(t *testing.T) {
	for _, n := range []int{0, 1, 100, 101, 2500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFixture(t)
			f.addPod("p1", "ns", nil)
			for i := range n {
				f.addContainer(fmt.Sprintf("c%05d", i), "p1", runtime.StateRunning, nil)
			}
			f.addContainer("other", "p1", runtime.StateExited, nil) // filtered out
			stream := newStream[runtimeapi.StreamContainersResponse](context.Background())
			err := callStream(t, f.s, stream, func() error {
				return f.s.StreamContainers(&runtimeapi.StreamContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: "c"}}, stream)
			})
			if err != nil {
				t.Fatal(err)
			}
			var sizes []int
			var all []string
			for _, m := range stream.messages() {
				sizes = append(sizes, len(m.Containers))
				for _, c := range m.Containers {
					all = append(all, c.Id)
				}
			}
			checkBatches(t, sizes, all, n)
		})
	}
}

func TestStreamContainersSendFailureEndsTheStream(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	for i := range 250 {
		f.addContainer(fmt.Sprintf("c%05d", i), "p1", runtime.StateRunning, nil)
	}
	stream := newStream[runtimeapi.StreamContainersResponse](context.Background())
	stream.sendErr = fmt.Errorf("send: %w", context.Canceled)
	err := callStream(t, f.s, stream, func() error {
		return f.s.StreamContainers(&runtimeapi.StreamContainersRequest{}, stream)
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want the send's", err)
	}
}

// kubelet copies ContainerStatus' image.image into the pod status and
// waits, after an image update, for it to equal the pod spec's image: the
// status reports user_specified_image (what the spec said), never the ID
// kubelet sent in image.image.
func TestContainerStatusReportsThePodSpecImage(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	c := f.addContainer("c1", "p1", runtime.StateRunning, nil)
	c.Config.Image = &runtimeapi.ImageSpec{Image: "sha256:0123", UserSpecifiedImage: "registry.k8s.io/e2e-test-images/busybox:1.37.0-1"}
	plain := f.addContainer("c2", "p1", runtime.StateRunning, nil) // a CRI client that sends only a name
	resp, err := containerStatus(t, f, "c1", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetStatus().GetImage().GetImage(); got != "registry.k8s.io/e2e-test-images/busybox:1.37.0-1" {
		t.Fatalf("ContainerStatus image = %q, want the pod spec's image", got)
	}
	list, err := f.s.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"c1": "registry.k8s.io/e2e-test-images/busybox:1.37.0-1", "c2": plain.Config.GetImage().GetImage()}
	for _, lc := range list.GetContainers() {
		if got := lc.GetImage().GetImage(); got != want[lc.GetId()] {
			t.Errorf("ListContainers %s image = %q, want %q", lc.GetId(), got, want[lc.GetId()])
		}
	}
}
