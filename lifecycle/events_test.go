package lifecycle

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A subscriber that stops reading loses events rather than stalling
// container operations; each loss is counted (the metric) and the first,
// second, fourth... are logged, so a stalled kubelet shows in the log
// without flooding it.
func TestSlowSubscriberLosesEventsCountedAndLogged(t *testing.T) {
	var buf bytes.Buffer
	m := &Manager{events: newBus(slog.New(slog.NewTextHandler(&buf, nil)))}
	ch, cancel := m.Subscribe()
	defer cancel()
	const extra = 5
	for i := range cap(ch) + extra {
		m.events.publish("c"+string(rune('a'+i%26)), "p", runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	}
	if got := m.DroppedEvents(); got != extra {
		t.Fatalf("dropped %d, want %d", got, extra)
	}
	if len(ch) != cap(ch) {
		t.Fatalf("subscriber holds %d events, want its full buffer %d", len(ch), cap(ch))
	}
	// Logged at drops 1, 2 and 4 of 5.
	if n := strings.Count(buf.String(), "container event dropped"); n != 3 {
		t.Fatalf("%d log lines for %d drops, want 3:\n%s", n, extra, buf.String())
	}
	if !strings.Contains(buf.String(), "dropped_total=4") {
		t.Fatalf("log does not carry the running count:\n%s", buf.String())
	}
}
