package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	cni "github.com/containerd/go-cni"
)

// BenchmarkRunPod is RunPodSandbox's part in this package: namespaces,
// pod files, records and the CNI ADD (its Stop and Remove are untimed).
func BenchmarkRunPod(b *testing.B) {
	m := newManager(&testing.T{}, b.TempDir())
	m.log = slog.New(slog.DiscardHandler)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		p, err := m.Run(ctx, podConfig(fmt.Sprintf("bench-%d", i), 0), "", nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := m.Stop(ctx, p.ID); err != nil {
			b.Fatal(err)
		}
		if err := m.Remove(ctx, p.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkPodFloor is the floor BenchmarkRunPod is measured against: a
// network namespace pinned the cheapest way there is and a CNI ADD through
// go-cni on the same configuration, nothing else.
func BenchmarkPodFloor(b *testing.B) {
	root := b.TempDir()
	m := newManager(&testing.T{}, root)
	m.log = slog.New(slog.DiscardHandler)
	c, err := cni.New(cni.WithMinNetworkCount(1), cni.WithPluginConfDir(filepath.Join(root, "net.d")),
		cni.WithPluginDir(m.cfg.CNIPluginDirs), cni.WithInterfacePrefix("eth"))
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Load(cni.WithDefaultConf); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("floor-%d", i)
		dir := filepath.Join(root, id)
		pins, err := pinNamespaces(dir, []string{NetNS}, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Setup(ctx, id, pins[NetNS]); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := c.Remove(ctx, id, pins[NetNS]); err != nil {
			b.Fatal(err)
		}
		if err := unpinAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
