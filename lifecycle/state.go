package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/crivet/crivet/oci/runtime"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The one container state. Every reader — ContainerStatus, ListContainers,
// the exec gate, stats, metrics — turns the runtime's answer into a state
// through these functions, so "its process state is gone" or "may it
// exec" has one answer wherever it is asked.
//
//	          CreateContainer            StartContainer
//	(none) ───────────────▶ created ────────────────▶ running
//	                           │                          │ exits, is
//	                           │ StopContainer            │ stopped or
//	                           ▼                          ▼ OOM-killed
//	                         exited ◀─────────────────────┘
//	any state ── record kept, runc/monitor state gone (a reboot) ──▶ unknown
//	any state ── RemoveContainer ──▶ (none)
//
// A container restored from a checkpoint (runc restore) runs its restored
// processes from CreateContainer on, but reports created until
// StartContainer records its start (oci/runtime).
//
// A container is created only once runc has created it; runc's own
// "creating" and "stopped without a recorded exit" show as unknown until
// they settle (oci/runtime).

// GoneReason is the reason a container whose record outlives its process
// state (the run root did not survive a reboot) reports.
const GoneReason = "Unknown"

// StateOf is the container's state from the runtime's answer: a record
// without runc or monitor state (runtime.ErrNotFound) is unknown, and said
// to be gone, rather than hidden or an error; any other error stays an
// error (the runtime could not answer now).
func StateOf(st runtime.Status, err error) (runtime.Status, error) {
	if errors.Is(err, runtime.ErrNotFound) {
		return runtime.Status{State: runtime.StateUnknown, Reason: GoneReason,
			Message: "container process state is gone (node rebooted?)"}, nil
	}
	return st, err
}

// ContainerState is StateOf the runtime's answer for the container now.
func (m *Manager) ContainerState(ctx context.Context, id string) (runtime.Status, error) {
	return StateOf(m.rt.Status(ctx, id))
}

// CRIState is the CRI's name for a state.
func CRIState(s runtime.State) runtimeapi.ContainerState {
	switch s {
	case runtime.StateCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case runtime.StateRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case runtime.StateExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// Running is the gate of everything that needs the container's process:
// exec, attach, port-forward into it, its stats and metrics. Only a
// running container passes; anything else is ErrState (or the runtime's
// error when it could not answer).
func Running(st runtime.Status, err error) error {
	st, err = StateOf(st, err)
	if err != nil {
		return err
	}
	if st.State != runtime.StateRunning {
		return fmt.Errorf("container is %s, not running: %w", st.State, ErrState)
	}
	return nil
}
