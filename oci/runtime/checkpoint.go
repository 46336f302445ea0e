package runtime

import (
	"context"
	"fmt"

	runc "github.com/containerd/go-runc"
)

// CheckpointOptions say where runc checkpoint puts CRIU's images and
// works (its dump.log goes in WorkPath).
type CheckpointOptions struct {
	ImagePath, WorkPath string
}

// Checkpoint dumps the running container's processes with CRIU through
// the runc that runs it, leaving them running (kubelet's checkpoint is a
// copy, not a migration). The options are otherwise runc's defaults:
// established TCP connections, external unix sockets and terminals make
// the dump fail rather than be restored half-working.
func (r *Runtime) Checkpoint(ctx context.Context, id string, o CheckpointOptions) error {
	if _, err := r.existing(id); err != nil {
		return err
	}
	h := r.handlerOf(id)
	if err := h.runc.Checkpoint(ctx, id, &runc.CheckpointOpts{ImagePath: o.ImagePath, WorkDir: o.WorkPath}, runc.LeaveRunning); err != nil {
		return fmt.Errorf("runc checkpoint (%s): %w", h.Runc, runcErr(err))
	}
	return nil
}
