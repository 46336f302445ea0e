package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	runc "github.com/containerd/go-runc"
)

// CRIU's logs, in the work directory runc gives it.
const (
	dumpLog    = "dump.log"
	restoreLog = "restore.log"
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
		// The work directory goes once the caller is done: the error
		// carries CRIU's own words.
		return fmt.Errorf("runc checkpoint (%s): %w; CRIU says: %s", h.Runc, runcErr(err), criuErrors(filepath.Join(o.WorkPath, dumpLog), 5))
	}
	return nil
}

// criuErrors is a CRIU log's error lines (its last lines if none), at
// most n, for an error message.
func criuErrors(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := strings.FieldsFunc(string(data), func(r rune) bool { return r == '\n' })
	var errs []string
	for _, l := range lines {
		if strings.Contains(l, "Error") {
			errs = append(errs, l)
		}
	}
	if len(errs) == 0 {
		errs = lines
	}
	if len(errs) > n {
		errs = errs[len(errs)-n:]
	}
	return strings.Join(errs, " | ")
}
