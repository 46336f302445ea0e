package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateContainer applies new resource limits to a container, in this
// order: the request is checked (spec.Resources), plugins may adjust it,
// runc applies it, and the record keeps it for ContainerStatus.
//
// It holds the container's lock, as removal does, for the whole update:
// an update that finds the container gone or going applies nothing, and
// the record is changed in place (sandbox.UpdateContainer), so a removal
// is never undone by an update saving a record it has deleted, nor a
// Removing phase turned back into Created.
func (m *Manager) UpdateContainer(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	unlock := m.locks.Lock(id)
	defer unlock()
	c, err := m.pods.GetContainer(id)
	if err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	if res == nil {
		return nil // nothing asked of Linux (a Windows-only update)
	}
	lr, err := spec.Resources(res)
	if err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	if c.Phase != sandbox.Created {
		return fmt.Errorf("update container %s: container is %s: %w", id, c.Phase, ErrState)
	}
	if lr, err = m.plugins.UpdateContainer(ctx, c, lr); err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	if err := m.rt.Update(ctx, id, lr); err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	if err := m.pods.UpdateContainer(id, func(rec *sandbox.Container) {
		cfg := proto.Clone(rec.Config).(*runtimeapi.ContainerConfig)
		if cfg == nil {
			cfg = &runtimeapi.ContainerConfig{}
		}
		if cfg.Linux == nil {
			cfg.Linux = &runtimeapi.LinuxContainerConfig{}
		}
		cfg.Linux.Resources = res
		rec.Config = cfg
	}); err != nil {
		// Cannot be gone under the lock; a failed save is reported.
		if errors.Is(err, sandbox.ErrContainerNotFound) {
			m.log.Error("update container: record vanished under its lock", "id", id)
		}
		return fmt.Errorf("update container %s: %w", id, err)
	}
	m.plugins.PostUpdateContainer(ctx, c)
	return nil
}
