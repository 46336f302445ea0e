package lifecycle

import (
	"errors"
	"fmt"
	"testing"

	"github.com/crivet/crivet/oci/runtime"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestStateOfTheOneAnswer(t *testing.T) {
	gone := fmt.Errorf("container c1: %w", runtime.ErrNotFound)
	busy := errors.New("runc state: timed out")
	for _, tc := range []struct {
		name      string
		st        runtime.Status
		err       error
		want      runtime.State
		wantErr   error
		cri       runtimeapi.ContainerState
		runningOK bool
	}{
		{"running", runtime.Status{State: runtime.StateRunning}, nil, runtime.StateRunning, nil, runtimeapi.ContainerState_CONTAINER_RUNNING, true},
		{"created", runtime.Status{State: runtime.StateCreated}, nil, runtime.StateCreated, nil, runtimeapi.ContainerState_CONTAINER_CREATED, false},
		{"exited", runtime.Status{State: runtime.StateExited, ExitCode: 3}, nil, runtime.StateExited, nil, runtimeapi.ContainerState_CONTAINER_EXITED, false},
		{"unsettled", runtime.Status{State: runtime.StateUnknown}, nil, runtime.StateUnknown, nil, runtimeapi.ContainerState_CONTAINER_UNKNOWN, false},
		{"process state gone", runtime.Status{}, gone, runtime.StateUnknown, nil, runtimeapi.ContainerState_CONTAINER_UNKNOWN, false},
		{"runtime cannot answer", runtime.Status{}, busy, "", busy, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := StateOf(tc.st, tc.err)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("StateOf error %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if rerr := Running(tc.st, tc.err); !errors.Is(rerr, tc.wantErr) {
					t.Errorf("Running: %v, want the runtime's error", rerr)
				}
				return
			}
			if st.State != tc.want || CRIState(st.State) != tc.cri {
				t.Errorf("state %q (CRI %v), want %q (%v)", st.State, CRIState(st.State), tc.want, tc.cri)
			}
			if tc.err != nil && (st.Reason != GoneReason || st.Message == "") {
				t.Errorf("gone container: reason %q message %q, want %q and a message", st.Reason, st.Message, GoneReason)
			}
			rerr := Running(tc.st, tc.err)
			if tc.runningOK != (rerr == nil) {
				t.Errorf("Running: %v, want passed=%v", rerr, tc.runningOK)
			}
			if rerr != nil && !errors.Is(rerr, ErrState) {
				t.Errorf("Running refused with %v, want ErrState", rerr)
			}
		})
	}
}
