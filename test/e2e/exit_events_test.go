package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Every container state change yields its CRI event exactly once,
// including those no request caused: a container that exits by itself and
// one the kernel OOM-kills each send CONTAINER_STOPPED (kubelet's evented
// PLEG relies on it); a later StopContainer adds no second one.
func TestExitsNobodyAskedForAreEvents(t *testing.T) {
	n := newNode(t)
	img, stream := n.startSubscribed(t)
	events := make(chan *runtimeapi.ContainerEventResponse, 64)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				close(events)
				return
			}
			events <- ev
		}
	}()
	pod := n.podJSON("exits", "default", nil)
	podID := firstLine(n.mustCrictl("runp", pod))
	quick := firstLine(n.mustCrictl("create", podID, n.ctrJSON("quick", img.Ref, img.Ref, map[string]any{
		"command": []string{"sh", "-c", "sleep 0.3; exit 3"}}), pod))
	// The shell keeps 200 MB of command output in memory under a 32 MiB limit.
	oom := firstLine(n.mustCrictl("create", podID, n.ctrJSON("oom", img.Ref, img.Ref, map[string]any{
		"command": []string{"sh", "-c", `x=$(head -c 200000000 /dev/zero | tr '\0' x); echo ${#x}`},
		"linux":   map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 32 << 20}}}), pod))
	n.mustCrictl("start", quick)
	n.mustCrictl("start", oom)

	type key struct {
		id string
		t  runtimeapi.ContainerEventType
	}
	seen := map[key]int{}
	stopped := func() bool {
		return seen[key{quick, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT}] > 0 && seen[key{oom, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT}] > 0
	}
	collect := func(until func() bool, d time.Duration) {
		deadline := time.After(d)
		for !until() {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatal("event stream ended")
				}
				seen[key{ev.ContainerId, ev.ContainerEventType}]++
				if ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT && ev.PodSandboxStatus.GetId() != podID {
					t.Errorf("STOPPED of %s without its pod's status: %+v", ev.ContainerId, ev)
				}
			case <-deadline:
				return
			}
		}
	}
	collect(stopped, 30*time.Second)
	if !stopped() {
		t.Fatalf("no CONTAINER_STOPPED for containers that exited on their own: %v", seen)
	}
	// At its exit, what runc keeps of a container (state, cgroup) is
	// released; what CRI reads of it stays until removal.
	for _, id := range []string{quick, oom} {
		runcState := filepath.Join(n.runRoot(), "runc", id)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(runcState); errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("runc state of exited container %.12s not released: %s", id, runcState)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, pat := range []string{"*", "*/*", "*/*/*"} {
			if dirs, _ := filepath.Glob("/sys/fs/cgroup/memory/" + pat + id + "*"); len(dirs) != 0 {
				t.Errorf("cgroup of exited container %.12s left: %v", id, dirs)
			}
		}
	}
	if out := n.mustCrictl("inspect", "-o", "go-template", "--template", "{{.status.reason}} {{.status.exitCode}}", oom); !strings.HasPrefix(out, "OOMKilled") {
		t.Errorf("oom container status: %q", out)
	}
	if out := n.mustCrictl("inspect", "-o", "go-template", "--template", "{{.status.reason}} {{.status.exitCode}}", quick); strings.TrimSpace(out) != "Error 3" {
		t.Errorf("quick container status: %q", out)
	}
	// Stopping what already exited, then removing: DELETED once each, no second STOPPED.
	for _, id := range []string{quick, oom} {
		n.mustCrictl("stop", id)
		n.mustCrictl("rm", id)
	}
	deleted := func() bool {
		return seen[key{quick, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT}] > 0 && seen[key{oom, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT}] > 0
	}
	collect(deleted, 10*time.Second)
	collect(func() bool { return false }, 300*time.Millisecond) // anything late
	for _, id := range []string{quick, oom} {
		for _, et := range []runtimeapi.ContainerEventType{runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
			runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT} {
			if got := seen[key{id, et}]; got != 1 {
				t.Errorf("container %.12s: %v sent %d times, want exactly once (%v)", id, et, got, seen)
			}
		}
	}
	n.mustCrictl("stopp", podID)
	n.mustCrictl("rmp", podID)
	assertNothingLeft(t, n)
}
