package server

import (
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// eventBus fans container lifecycle events out to GetContainerEvents
// subscribers (kubelet's evented PLEG). A subscriber too slow to keep up
// loses events rather than stalling container operations; kubelet falls
// back to relisting.
type eventBus struct {
	mu   sync.Mutex
	subs map[chan *runtimeapi.ContainerEventResponse]struct{}
	// status builds the pod status sent with each event.
	status func(podID string) (*runtimeapi.PodSandboxStatus, []*runtimeapi.ContainerStatus)
}

func newEventBus() *eventBus {
	return &eventBus{subs: map[chan *runtimeapi.ContainerEventResponse]struct{}{}}
}

func (b *eventBus) subscribe() (chan *runtimeapi.ContainerEventResponse, func()) {
	ch := make(chan *runtimeapi.ContainerEventResponse, 256)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}

func (b *eventBus) publish(containerID, podID string, t runtimeapi.ContainerEventType) {
	b.mu.Lock()
	n := len(b.subs)
	b.mu.Unlock()
	if n == 0 {
		return
	}
	ev := &runtimeapi.ContainerEventResponse{ContainerId: containerID, ContainerEventType: t, CreatedAt: nowNano()}
	if b.status != nil {
		ev.PodSandboxStatus, ev.ContainersStatuses = b.status(podID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (s *Server) GetContainerEvents(req *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	ch, cancel := s.events.subscribe()
	defer cancel()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev := <-ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}
