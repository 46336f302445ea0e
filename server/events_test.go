package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/oci/runtime"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runEvents starts GetContainerEvents over a fresh stream; sent receives
// each message as it is sent, done the handler's result.
func runEvents(t *testing.T, f *fixture) (stream *fakeStream[runtimeapi.ContainerEventResponse], sent chan *runtimeapi.ContainerEventResponse, cancel func(), done chan error) {
	t.Helper()
	f.lc.events = make(chan lifecycle.Event)
	f.lc.unsubscribed = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream = newStream[runtimeapi.ContainerEventResponse](ctx)
	sent = make(chan *runtimeapi.ContainerEventResponse, 16)
	stream.onSend = func(m *runtimeapi.ContainerEventResponse) { sent <- m }
	done = make(chan error, 1)
	go func() {
		done <- callStream(t, f.s, stream, func() error { return f.s.GetContainerEvents(&runtimeapi.GetEventsRequest{}, stream) })
	}()
	return stream, sent, cancel, done
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
		panic("unreachable")
	}
}

func TestGetContainerEventsForwardsEventsWithThePodStatus(t *testing.T) {
	f := newFixture(t)
	f.addPod("pod1", "ns", nil)
	f.addContainer("c1", "pod1", runtime.StateRunning, nil)
	f.addContainer("c2", "pod1", runtime.StateExited, nil)
	_, sent, cancel, done := runEvents(t, f)

	when := at(100)
	f.lc.events <- lifecycle.Event{ContainerID: "c1", PodID: "pod1", Type: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, Time: when}
	m := wait(t, sent, "event")
	if m.ContainerId != "c1" || m.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT || m.CreatedAt != when.UnixNano() {
		t.Fatalf("event %v", m)
	}
	if m.PodSandboxStatus.GetId() != "pod1" || m.PodSandboxStatus.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod status %v", m.PodSandboxStatus)
	}
	if got := ids(m.ContainersStatuses, (*runtimeapi.ContainerStatus).GetId); len(got) != 2 || got[0] != "c1" || got[1] != "c2" {
		t.Fatalf("container statuses %q, want c1 c2", got)
	}

	// An event of a pod already gone is still forwarded, without status.
	f.lc.events <- lifecycle.Event{ContainerID: "c9", PodID: "gone", Type: runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, Time: when}
	m = wait(t, sent, "event of a removed pod")
	if m.ContainerId != "c9" || m.PodSandboxStatus != nil || m.ContainersStatuses != nil {
		t.Fatalf("event of a removed pod %v", m)
	}

	cancel()
	if err := wait(t, done, "return"); err != nil {
		t.Fatalf("ended with %v", err)
	}
	wait(t, f.lc.unsubscribed, "unsubscribe")
}

// kubelet going away ends the stream (and the subscription) even when no
// event ever comes.
func TestGetContainerEventsReturnsWhenTheStreamContextEnds(t *testing.T) {
	f := newFixture(t)
	_, _, cancel, done := runEvents(t, f)
	cancel()
	if err := wait(t, done, "return"); err != nil {
		t.Fatalf("ended with %v", err)
	}
	wait(t, f.lc.unsubscribed, "unsubscribe")
	wantCalls(t, "lifecycle", f.lc.got(), "Subscribe", "Unsubscribe")
}

func TestGetContainerEventsReturnsWhenTheLifecycleClosesTheChannel(t *testing.T) {
	f := newFixture(t)
	_, _, _, done := runEvents(t, f)
	close(f.lc.events)
	if err := wait(t, done, "return"); err != nil {
		t.Fatalf("ended with %v", err)
	}
	wait(t, f.lc.unsubscribed, "unsubscribe")
}

func TestGetContainerEventsSendFailureEndsTheStream(t *testing.T) {
	f := newFixture(t)
	f.addPod("pod1", "ns", nil)
	stream, _, _, done := runEvents(t, f)
	stream.sendErr = errors.New("transport closed")
	f.lc.events <- lifecycle.Event{ContainerID: "c1", PodID: "pod1", Type: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT}
	if err := wait(t, done, "return"); err == nil || err.Error() != "transport closed" {
		t.Fatalf("ended with %v, want the send error", err)
	}
	wait(t, f.lc.unsubscribed, "unsubscribe")
}
