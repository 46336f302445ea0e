package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	cni "github.com/containerd/go-cni"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
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
		p, err := runPod(m, ctx, podConfig(fmt.Sprintf("bench-%d", i), 0), "", nil)
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

// Listing 500 containers: the copying list (Containers) against the shared
// one ListContainers uses (ContainersView).
func BenchmarkContainersList500(b *testing.B) {
	m := &Manager{containers: map[string]*Container{}}
	cfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}
	for i := range 500 {
		id := fmt.Sprintf("%064d", i)
		m.containers[id] = &Container{ID: id, PodID: fmt.Sprintf("pod%d", i%4), Config: cfg, ImageID: "sha256:" + id, Bundle: "/run/crivet/bundles/" + id}
	}
	b.Run("copies", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = m.Containers("")
		}
	})
	b.Run("view", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = m.ContainersView("")
		}
	})
}
