package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StartContainer starts a created container and publishes CONTAINER_STARTED.
func (m *Manager) StartContainer(ctx context.Context, c *sandbox.Container) error {
	st, err := m.rt.Status(ctx, c.ID)
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	if st.State != runtime.StateCreated {
		return fmt.Errorf("start container %s: container is %s, not created: %w", c.ID, st.State, ErrState)
	}
	if err := m.plugins.StartContainer(ctx, c); err != nil {
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	if err := m.rt.Start(ctx, c.ID); err != nil {
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	m.events.publish(c.ID, c.PodID, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	m.plugins.PostStartContainer(ctx, c)
	return nil
}

// stopSignal: the container config's, else the image's, else SIGTERM.
func stopSignal(c *sandbox.Container) syscall.Signal {
	if sig := c.Config.GetStopSignal(); sig != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		if n := unix.SignalNum(strings.TrimPrefix(sig.String(), "SIGNAL_")); n != 0 {
			return n
		}
	}
	if name := c.StopSignal; name != "" {
		if !strings.HasPrefix(name, "SIG") {
			name = "SIG" + name
		}
		if n := unix.SignalNum(strings.ToUpper(name)); n != 0 {
			return n
		}
	}
	return syscall.SIGTERM
}

// StopContainer stops the container within timeout (then kills it) and
// publishes CONTAINER_STOPPED, unless its exit was already published.
func (m *Manager) StopContainer(ctx context.Context, c *sandbox.Container, timeout time.Duration) error {
	st, err := m.rt.Status(ctx, c.ID)
	if errors.Is(err, runtime.ErrNotFound) {
		m.plugins.StopContainer(ctx, c)
		return nil // no process state left (e.g. after a reboot): nothing runs
	}
	if err != nil {
		return fmt.Errorf("stop container %s: %w", c.ID, err)
	}
	if !st.State.Live() {
		m.plugins.StopContainer(ctx, c) // once per container, also after an exit
		return nil
	}
	if err := m.rt.Stop(ctx, c.ID, stopSignal(c), timeout); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return fmt.Errorf("stop container %s: %w", c.ID, err)
	}
	m.events.publish(c.ID, c.PodID, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	m.plugins.StopContainer(ctx, c)
	return nil
}

// RemoveContainer marks the record Removing, then takes the container's
// parts down one by one: its processes and runc state with its monitor,
// the storage container, the image volume mounts, the bundle, and the
// record last. Each step treats a part already gone as done, so the
// removal can be repeated after a crash at any point, and start-up
// recovery finishes a Removing record by running this again.
//
// It holds the container's lock (see UpdateContainer) and works on the
// record as stored once it has it: a removal that finds it gone is done.
func (m *Manager) RemoveContainer(ctx context.Context, c *sandbox.Container) error {
	unlock := m.locks.Lock(c.ID)
	defer unlock()
	cur, err := m.pods.GetContainer(c.ID)
	if errors.Is(err, sandbox.ErrContainerNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	c = cur
	if c.Phase != sandbox.Removing {
		if err := m.pods.UpdateContainer(c.ID, func(c *sandbox.Container) { c.Phase = sandbox.Removing }); err != nil {
			return fmt.Errorf("remove container %s: %w", c.ID, err)
		}
	}
	if err := m.StopContainer(ctx, c, 0); err != nil {
		return err
	}
	m.plugins.RemoveContainer(ctx, c)
	if err := m.discardContainer(ctx, c); err != nil {
		return err
	}
	m.events.publish(c.ID, c.PodID, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

// discardContainer removes every part of a container and then its record;
// see RemoveContainer. It also undoes a create a crash interrupted.
func (m *Manager) discardContainer(ctx context.Context, c *sandbox.Container) error {
	if err := m.rt.Delete(ctx, c.ID); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	if err := m.images.RemoveRootfs(c.ID); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	// Storage counts image mounts: each one released is recorded at once,
	// so a repeated removal never releases another container's mount.
	for len(c.ImageMounts) > 0 {
		if err := m.images.UnmountImage(c.ImageMounts[0]); err != nil {
			return fmt.Errorf("remove container %s: %w", c.ID, err)
		}
		c.ImageMounts = c.ImageMounts[1:]
		rest := c.ImageMounts
		if err := m.pods.UpdateContainer(c.ID, func(c *sandbox.Container) { c.ImageMounts = rest }); err != nil && !errors.Is(err, sandbox.ErrContainerNotFound) {
			return fmt.Errorf("remove container %s: %w", c.ID, err)
		}
	}
	if c.Bundle != "" {
		if err := os.RemoveAll(c.Bundle); err != nil {
			return fmt.Errorf("remove container %s: %w", c.ID, err)
		}
	}
	if err := m.pods.RemoveContainer(c.ID); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	return nil
}
