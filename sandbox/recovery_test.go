package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func leases(t *testing.T, root string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(root, "ipam", "crivet-test"))
	var out []string
	for _, e := range ents {
		if e.Name() != "lock" && !strings.HasPrefix(e.Name(), "last_reserved_ip") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Run undoes everything when its completion step fails: no record, no
// pod directory, no pins, no IPAM lease.
func TestRunUndoesAllWhenCompletionFails(t *testing.T) {
	root := t.TempDir()
	m := newManager(t, root)
	boom := errors.New("infra failed")
	var dir string
	_, err := runPod(m, context.Background(), podConfig("undo", 0), "", func(p *Pod) error {
		dir = p.Dir
		if len(leases(t, root)) != 1 {
			t.Errorf("no IPAM lease while the pod runs: %v", leases(t, root))
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Run: %v", err)
	}
	if got := mountsUnder(t, root); len(got) != 0 {
		t.Errorf("mounts left: %v", got)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pod directory left: %v", err)
	}
	if recs, _ := os.ReadDir(m.recordDir()); len(recs) != 0 {
		t.Errorf("records left: %v", recs)
	}
	if l := leases(t, root); len(l) != 0 {
		t.Errorf("IPAM leases left: %v", l)
	}
	// The name is free again.
	p, err := runPod(m, context.Background(), podConfig("undo", 0), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(context.Background(), p.ID); err != nil {
		t.Fatal(err)
	}
}

// A pod whose network namespace pin is gone (a crash between unpinning
// and recording it) still releases its IPAM lease: the CNI DEL goes
// without a namespace. A pod directory without a record, pins and all,
// is removed at start-up.
func TestRemoveWithoutNetnsAndOrphanDirs(t *testing.T) {
	root := t.TempDir()
	m := newManager(t, root)
	ctx := context.Background()
	p, err := runPod(m, ctx, podConfig("gone", 38097), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(p.NetNS, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, p.ID); err != nil {
		t.Fatalf("Remove with the netns pin gone: %v", err)
	}
	if l := leases(t, root); len(l) != 0 {
		t.Errorf("IPAM lease left: %v", l)
	}
	// What a RunPodSandbox killed before its first record leaves.
	orphan := filepath.Join(root, "run", "sandboxes", "0123abcd")
	pins, err := pinNamespaces(filepath.Join(orphan, "ns"), []string{NetNS, UTSNS, IPCNS}, "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(pins) != 3 || len(mountsUnder(t, orphan)) != 3 {
		t.Fatalf("pins: %v", pins)
	}
	m2, err := New(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	removed, err := m2.RemoveOrphanDirs(ctx)
	if err != nil || len(removed) != 1 || removed[0] != "0123abcd" {
		t.Fatalf("RemoveOrphanDirs: %v %v", removed, err)
	}
	if got := mountsUnder(t, root); len(got) != 0 {
		t.Errorf("mounts left: %v", got)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan directory left: %v", err)
	}
}

// runPod runs a pod as lifecycle does: BeginPod, then complete (if any),
// then CommitPod, or AbortPod when complete fails.
func runPod(m *Manager, ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string, complete func(*Pod) error) (*Pod, error) {
	p, err := m.BeginPod(ctx, cfg, handler)
	if err != nil {
		return nil, err
	}
	if complete != nil {
		if err := complete(p); err != nil {
			m.AbortPod(ctx, p)
			return nil, err
		}
	}
	return m.CommitPod(p)
}
