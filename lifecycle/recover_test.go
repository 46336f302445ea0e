package lifecycle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// leftContainer stores what a kill -9 can leave of container id in phase
// ph: its record and every part (runc state, storage container, an image
// volume mount, bundle).
func (e *env) leftContainer(t *testing.T, id, podID string, ph sandbox.Phase) {
	t.Helper()
	e.pods.containers[id] = &sandbox.Container{ID: id, PodID: podID, Phase: ph, Bundle: e.m.bundle(id),
		Config: ctrConfig(id), ImageMounts: []string{volA.ID}}
	e.rt.states[id] = runtime.Status{State: runtime.StateRunning, Pid: 1}
	e.images.rootfs[id] = filepath.Join(e.images.dir, "rootfs", id)
	e.images.mounts[volA.ID]++
	if err := os.MkdirAll(e.m.bundle(id), 0o700); err != nil {
		t.Fatal(err)
	}
}

// Start-up recovery, from every phase a record can be left in, and for
// every part no record owns.
func TestRecoverFromEachRecordedPhase(t *testing.T) {
	ctx := context.Background()
	t.Run("container creating: undone", func(t *testing.T) {
		e := newEnv(t)
		e.readyPod("p1", "ns")
		e.leftContainer(t, "c1", "p1", sandbox.Creating)
		e.m.Recover(ctx)
		e.nothingLeft(t, "c1")
		wantLog(t, "events", e.eventTypes()) // the client never had its ID
	})
	t.Run("container removing: finished", func(t *testing.T) {
		e := newEnv(t)
		e.readyPod("p1", "ns")
		e.leftContainer(t, "c1", "p1", sandbox.Removing)
		e.m.Recover(ctx)
		e.nothingLeft(t, "c1")
		wantLog(t, "events", e.eventTypes(), "STOPPED c1", "DELETED c1")
	})
	t.Run("container created: kept whole", func(t *testing.T) {
		e := newEnv(t)
		e.readyPod("p1", "ns")
		e.leftContainer(t, "c1", "p1", sandbox.Created)
		e.m.Recover(ctx)
		if e.pods.containers["c1"] == nil || e.rt.states["c1"].State != runtime.StateRunning || e.images.rootfs["c1"] == "" || e.images.mounts[volA.ID] != 1 {
			t.Fatalf("a created container lost parts: %q", e.got())
		}
		if _, err := os.Stat(e.m.bundle("c1")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("pod creating: undone with its infra", func(t *testing.T) {
		e := newEnv(t)
		p := e.readyPod("p1", "ns")
		p.Phase = sandbox.Creating
		e.rt.states["p1"] = runtime.Status{State: runtime.StateRunning, Pid: 1} // infra started, not recorded
		e.m.Recover(ctx)
		if _, ok := e.pods.pods["p1"]; ok {
			t.Fatal("a Creating pod is left")
		}
		if _, ok := e.rt.states["p1"]; ok {
			t.Fatal("its infra is left")
		}
		wantLog(t, "pod steps", e.only("pods.Remove"), "pods.Remove p1")
	})
	t.Run("pod removing: its containers and it removed", func(t *testing.T) {
		e := newEnv(t)
		p := e.readyPod("p1", "ns")
		p.Phase = sandbox.Removing
		e.leftContainer(t, "c1", "p1", sandbox.Created)
		e.m.Recover(ctx)
		e.nothingLeft(t, "c1")
		if _, ok := e.pods.pods["p1"]; ok {
			t.Fatal("a Removing pod is left")
		}
	})
	t.Run("ready pod whose infra is gone: not ready", func(t *testing.T) {
		e := newEnv(t)
		p := e.readyPod("p1", "ns")
		p.InfraID = "p1"
		e.m.Recover(ctx)
		if e.pods.pods["p1"].State != sandbox.NotReady {
			t.Fatalf("pod state %v", e.pods.pods["p1"].State)
		}
	})
	t.Run("parts no record owns: removed", func(t *testing.T) {
		e := newEnv(t)
		e.readyPod("p1", "ns")
		e.leftContainer(t, "keep", "p1", sandbox.Created)
		e.rt.states["orphan-runc"] = runtime.Status{State: runtime.StateRunning}
		e.images.rootfs["orphan-rootfs"] = "x"
		os.MkdirAll(e.m.bundle("orphan-bundle"), 0o700)
		e.images.mounts[volB.ID] = 2 // held by no record
		e.images.mounts[volA.ID]++   // one more than "keep" holds
		work := filepath.Join(e.runRoot, "checkpoints", "keep-123")
		os.MkdirAll(work, 0o700)
		e.leftContainer(t, "of-gone-pod", "gone", sandbox.Created)
		e.m.Recover(ctx)
		if _, ok := e.rt.states["orphan-runc"]; ok {
			t.Error("runc state without a record is left")
		}
		if _, ok := e.images.rootfs["orphan-rootfs"]; ok {
			t.Error("storage container without a record is left")
		}
		if _, err := os.Stat(e.m.bundle("orphan-bundle")); !os.IsNotExist(err) {
			t.Error("bundle without a record is left")
		}
		if _, err := os.Stat(work); !os.IsNotExist(err) {
			t.Error("checkpoint work directory is left")
		}
		if _, ok := e.pods.containers["of-gone-pod"]; ok {
			t.Error("container of a removed pod is left")
		}
		if want := map[string]int{volA.ID: 1}; len(e.images.mounts) != 1 || e.images.mounts[volA.ID] != 1 {
			t.Errorf("image mounts %v, want %v", e.images.mounts, want)
		}
		if e.pods.containers["keep"] == nil || e.images.rootfs["keep"] == "" {
			t.Error("the recorded container lost parts")
		}
	})
	t.Run("recovery ends", func(t *testing.T) {
		e := newEnv(t)
		e.m.Recover(ctx)
		if !slices.Contains(e.got(), "pods.EndRecovery") {
			t.Fatal("EndRecovery not called")
		}
	})
}

func podConfig(name string, pid runtimeapi.NamespaceMode) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: name},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: pid}}},
	}
}

// A pod runs in this order, and each failing step undoes the ones before.
func TestRunPodOrderAndUndo(t *testing.T) {
	ctx := context.Background()
	t.Run("shared PID namespace", func(t *testing.T) {
		e := newEnv(t)
		p, err := e.m.RunPod(ctx, podConfig("web", runtimeapi.NamespaceMode_POD), "")
		if err != nil {
			t.Fatal(err)
		}
		wantLog(t, "steps", e.got(), "pods.BeginPod pod1", "plugins.RunPod pod1", "rt.Create pod1", "rt.Start pod1", "pods.CommitPod pod1")
		if p.InfraID != "pod1" || p.Phase != sandbox.Created {
			t.Fatalf("pod %+v", p)
		}
	})
	t.Run("own PID namespaces: no infra", func(t *testing.T) {
		e := newEnv(t)
		if _, err := e.m.RunPod(ctx, podConfig("web", runtimeapi.NamespaceMode_CONTAINER), ""); err != nil {
			t.Fatal(err)
		}
		wantLog(t, "steps", e.got(), "pods.BeginPod pod1", "plugins.RunPod pod1", "pods.CommitPod pod1")
	})
	for _, c := range []struct {
		step string
		undo []string
	}{
		{"pods.BeginPod", nil},
		{"plugins.RunPod", []string{"pods.AbortPod pod1"}},
		{"rt.Start", []string{"rt.Delete pod1", "plugins.RemovePod pod1", "pods.AbortPod pod1"}},
		{"pods.CommitPod", []string{"rt.Delete pod1", "plugins.RemovePod pod1", "pods.AbortPod pod1"}},
	} {
		t.Run("failing "+c.step, func(t *testing.T) {
			e := newEnv(t)
			e.failOn(c.step, os.ErrPermission)
			if _, err := e.m.RunPod(ctx, podConfig("web", runtimeapi.NamespaceMode_POD), ""); err == nil {
				t.Fatal("run succeeded")
			}
			log := e.got()
			i := slices.Index(log, c.step+" pod1")
			if i < 0 {
				t.Fatalf("%s not called: %q", c.step, log)
			}
			wantLog(t, "undo", log[i+1:], c.undo...)
			if _, err := os.Stat(e.m.bundle("pod1")); !os.IsNotExist(err) {
				t.Error("infra bundle left")
			}
			if len(e.rt.states) != 0 {
				t.Errorf("runc state left: %v", e.rt.states)
			}
		})
	}
	t.Run("unknown handler: nothing made", func(t *testing.T) {
		e := newEnv(t)
		if _, err := e.m.RunPod(ctx, podConfig("web", runtimeapi.NamespaceMode_POD), "kata"); err == nil {
			t.Fatal("run succeeded")
		}
		wantLog(t, "steps", e.got())
	})
}

// Stopping a pod stops its containers, then its infra, tells plugins
// once, and releases the network; removing it removes everything.
func TestStopAndRemovePod(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p, err := e.m.RunPod(ctx, podConfig("web", runtimeapi.NamespaceMode_POD), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ctrConfig("app")
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	c, err := e.m.CreateContainer(ctx, CreateRequest{PodID: p.ID, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.StartContainer(ctx, c); err != nil {
		t.Fatal(err)
	}
	e.calls.log = nil
	if err := e.m.StopPod(ctx, p); err != nil {
		t.Fatal(err)
	}
	wantLog(t, "stop", e.got(), "rt.Stop "+c.ID+" terminated", "plugins.StopContainer "+c.ID, "rt.Stop pod1 terminated", "plugins.StopPod pod1", "pods.Stop pod1")
	p, _ = e.pods.Get(p.ID)
	e.calls.log = nil
	if err := e.m.StopPod(ctx, p); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(e.got(), "plugins.StopPod pod1") {
		t.Fatal("plugins told twice that the pod stopped")
	}
	if err := e.m.RemovePod(ctx, p); err != nil {
		t.Fatal(err)
	}
	e.nothingLeft(t, c.ID)
	if _, ok := e.pods.pods[p.ID]; ok {
		t.Fatal("pod record left")
	}
	if _, ok := e.rt.states["pod1"]; ok {
		t.Fatal("infra left")
	}
}

// A pod resize is told to plugins, which may refuse it; a missing pod is
// not found and tells no one.
func TestUpdatePodTellsPlugins(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.readyPod("p1", "ns")
	if err := e.m.UpdatePod(ctx, "p1", nil, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	wantLog(t, "plugins", e.got(), "plugins.UpdatePod p1", "plugins.PostUpdatePod p1")
	e.calls.log = nil
	e.failOn("plugins.UpdatePod", os.ErrPermission)
	if err := e.m.UpdatePod(ctx, "p1", nil, nil); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("refused: %v", err)
	}
	wantLog(t, "after a refusal", e.got(), "plugins.UpdatePod p1")
	e.calls.log = nil
	if err := e.m.UpdatePod(ctx, "gone", nil, nil); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("missing pod: %v", err)
	}
	wantLog(t, "for a missing pod", e.got())
}
