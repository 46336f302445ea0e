package lifecycle

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
)

// startInfra runs the pod's infra process: crivet-pause as PID 1 of the
// pod's shared PID namespace, from a root filesystem holding only itself.
func (m *Manager) startInfra(ctx context.Context, pod *sandbox.Pod) (err error) {
	if m.cfg.PauseBinary == "" {
		return fmt.Errorf("pod %s shares a PID namespace but no pause binary is configured", pod.ID)
	}
	id := pod.ID
	bundle := m.bundle(id)
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(bundle)
		}
	}()
	if pod.UserNS != "" {
		if err := userInfraRootfs(m.cfg.RunRoot, bundle, rootfs, pod); err != nil {
			return fmt.Errorf("pod %s infra: %w", id, err)
		}
	}
	ns := func(path string) spec.Namespace {
		if path == "" {
			return spec.Namespace{Host: true}
		}
		return spec.Namespace{Path: path}
	}
	sp, err := spec.Sandbox(spec.SandboxInput{
		ID: id, Sandbox: pod.Config, Rootfs: rootfs, PauseBinary: m.cfg.PauseBinary,
		Namespaces:   spec.Namespaces{Network: ns(pod.NetNS), IPC: ns(pod.IPCNS), UTS: ns(pod.UTSNS), User: userNamespace(pod)},
		CgroupParent: pod.Config.GetLinux().GetCgroupParent(),
		CgroupDriver: m.cfg.CgroupDriver,
	})
	if err != nil {
		return fmt.Errorf("pod %s infra spec: %w", id, err)
	}
	if err := writeBundle(bundle, sp); err != nil {
		return fmt.Errorf("pod %s infra: %w", id, err)
	}
	if err := m.rt.Create(ctx, runtime.CreateOptions{ID: id, Bundle: bundle, Handler: pod.RuntimeHandler}); err != nil {
		_ = m.removeInfra(context.WithoutCancel(ctx), id)
		return fmt.Errorf("pod %s infra: %w", id, err)
	}
	if err := m.rt.Start(ctx, id); err != nil {
		_ = m.removeInfra(context.WithoutCancel(ctx), id)
		return fmt.Errorf("pod %s infra: %w", id, err)
	}
	pod.InfraID = id // recorded by the caller (sandbox.Manager.Run)
	return nil
}

func (m *Manager) infraPid(pod *sandbox.Pod) (int, error) {
	if pod.InfraID == "" {
		return 0, fmt.Errorf("pod %s has no shared PID namespace", pod.ID)
	}
	st, err := m.rt.Status(context.Background(), pod.InfraID)
	if err != nil {
		return 0, err
	}
	if st.State != runtime.StateRunning || st.Pid == 0 {
		return 0, fmt.Errorf("pod %s: infra process is %s", pod.ID, st.State)
	}
	return st.Pid, nil
}

func (m *Manager) stopInfra(ctx context.Context, pod *sandbox.Pod) error {
	st, err := m.rt.Status(ctx, pod.InfraID)
	if err != nil || !st.State.Live() {
		return nil
	}
	return m.rt.Stop(ctx, pod.InfraID, syscall.SIGTERM, 2*time.Second)
}

// removeInfra removes the infra container id (the pod's ID) and its bundle;
// either being gone already is fine.
func (m *Manager) removeInfra(ctx context.Context, id string) error {
	if err := m.rt.Delete(ctx, id); err != nil {
		return err
	}
	return os.RemoveAll(m.bundle(id))
}
