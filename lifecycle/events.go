package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Event is one container state change, as CRI's GetContainerEvents names it.
type Event struct {
	ContainerID, PodID string
	Type               runtimeapi.ContainerEventType
	Time               time.Time
}

// bus fans events out to subscribers (kubelet's evented PLEG). A
// subscriber too slow to keep up loses events rather than stalling
// container operations; kubelet falls back to relisting.
//
// Every change is published exactly once: CREATED, STARTED and DELETED by
// the one call that made them; STOPPED by whichever comes first of a stop
// request and the exit record the monitor writes (a container that ends on
// its own or is OOM-killed has only the latter).
type bus struct {
	mu      sync.Mutex
	subs    map[chan Event]struct{}
	stopped map[string]bool // containers whose STOPPED went out
	// dropped counts events a full subscriber did not get; each power of
	// two is logged, so a stalled subscriber is seen without a flood.
	dropped atomic.Uint64
	log     *slog.Logger
}

func newBus(log *slog.Logger) *bus {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &bus{subs: map[chan Event]struct{}{}, stopped: map[string]bool{}, log: log}
}

// DroppedEvents is how many events subscribers too slow to keep up did
// not get since start (crivet_container_events_dropped_total).
func (m *Manager) DroppedEvents() uint64 { return m.events.dropped.Load() }

// Subscribe returns a channel of events and the function that ends the
// subscription.
func (m *Manager) Subscribe() (<-chan Event, func()) {
	b := m.events
	ch := make(chan Event, 256)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}

func (b *bus) publish(containerID, podID string, t runtimeapi.ContainerEventType) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch t {
	case runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT:
		if b.stopped[containerID] {
			return
		}
		b.stopped[containerID] = true
	case runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT:
		delete(b.stopped, containerID)
	}
	ev := Event{ContainerID: containerID, PodID: podID, Type: t, Time: time.Now()}
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
			if n := b.dropped.Add(1); n&(n-1) == 0 {
				b.log.Warn("container event dropped: a GetContainerEvents subscriber is not keeping up (kubelet relists)",
					"container", containerID, "type", t.String(), "dropped_total", n)
			}
		}
	}
}

// markStopped records, without publishing, containers found already
// exited at start-up: their STOPPED belonged to an earlier daemon.
func (b *bus) markStopped(id string) {
	b.mu.Lock()
	b.stopped[id] = true
	b.mu.Unlock()
}

// followExits publishes STOPPED for each container whose monitor records
// an exit. Exits of infra processes and of containers being created or
// removed are not container events.
func (m *Manager) followExits(ctx context.Context, exits <-chan string) {
	// runc's part of an exited container is released in the background,
	// one at a time, so that events are not held up by runc runs.
	releases := make(chan string, 256)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case id := <-releases:
				if err := m.rt.Release(ctx, id); err != nil && !errors.Is(err, runtime.ErrNotFound) {
					m.log.Debug("release exited container", "id", id, "error", err)
				}
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case id, ok := <-exits:
			if !ok {
				return
			}
			c, err := m.pods.GetContainer(id)
			if errors.Is(err, sandbox.ErrContainerNotFound) || err != nil || c.ID != id {
				continue
			}
			m.events.publish(c.ID, c.PodID, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
			// Plugins learn of an exit no request caused too; not
			// waited for, so a slow plugin never delays other exits.
			go m.plugins.StopContainer(context.WithoutCancel(ctx), c)
			select {
			case releases <- id:
			default: // a backlog: the removal deletes what runc keeps
			}
		}
	}
}
