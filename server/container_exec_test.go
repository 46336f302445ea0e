package server

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/runtime"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func execSync(t *testing.T, f *fixture, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	return call(t, f.s, func(ctx context.Context) (*runtimeapi.ExecSyncResponse, error) { return f.s.ExecSync(ctx, req) })
}

func TestExecSyncRunsInTheResolvedContainerWithTimeout(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("abc123", "p1", runtime.StateRunning, nil)
	f.rt.execOut = []byte("hello")
	resp, err := execSync(t, f, &runtimeapi.ExecSyncRequest{ContainerId: "abc", Cmd: []string{"echo", "hello"}, Timeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "processes", f.rt.got(), "ExecSync abc123")
	if !slices.Equal(f.rt.execCmds[0], []string{"echo", "hello"}) || f.rt.execTOs[0] != 5*time.Second {
		t.Fatalf("exec got %q timeout %v", f.rt.execCmds[0], f.rt.execTOs[0])
	}
	if string(resp.Stdout) != "hello" || string(resp.Stderr) != "err" || resp.ExitCode != 3 {
		t.Fatalf("response %q %q %d", resp.Stdout, resp.Stderr, resp.ExitCode)
	}
}

// Exec, ExecSync, Attach and ReopenContainerLog need a running container:
// any other state is FailedPrecondition and nothing runs.
func TestExecInANonRunningContainerIsFailedPrecondition(t *testing.T) {
	rpcs := map[string]func(*criServer, context.Context) error{
		"ExecSync": func(s *criServer, ctx context.Context) error {
			_, err := s.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"true"}})
			return err
		},
		"Exec": func(s *criServer, ctx context.Context) error {
			_, err := s.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh"}, Stdout: true})
			return err
		},
		"Attach": func(s *criServer, ctx context.Context) error {
			_, err := s.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: "c1", Stdout: true})
			return err
		},
		"ReopenContainerLog": func(s *criServer, ctx context.Context) error {
			_, err := s.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: "c1"})
			return err
		},
	}
	for _, state := range []runtime.State{runtime.StateCreated, runtime.StateExited, runtime.StateUnknown} {
		for name, rpc := range rpcs {
			t.Run(string(state)+"/"+name, func(t *testing.T) {
				f := newFixture(t)
				f.addPod("p1", "ns", nil)
				f.addContainer("c1", "p1", state, nil)
				_, err := call(t, f.s, func(ctx context.Context) (any, error) { return nil, rpc(f.s, ctx) })
				wantCode(t, err, codes.FailedPrecondition)
				wantCalls(t, "processes", f.rt.got())
			})
		}
	}
}

func TestExecSyncErrorCodes(t *testing.T) {
	for _, c := range []struct {
		name  string
		req   *runtimeapi.ExecSyncRequest
		setup func(*fixture)
		code  codes.Code
	}{
		{"missing container is NotFound", &runtimeapi.ExecSyncRequest{ContainerId: "gone", Cmd: []string{"true"}}, nil, codes.NotFound},
		{"ambiguous prefix is InvalidArgument", &runtimeapi.ExecSyncRequest{ContainerId: "c", Cmd: []string{"true"}}, nil, codes.InvalidArgument},
		// The record exists and ContainerStatus reports it unknown: the
		// one state says it is not running, not that it is not there.
		{"no process state is FailedPrecondition", &runtimeapi.ExecSyncRequest{ContainerId: "c2", Cmd: []string{"true"}}, func(f *fixture) { delete(f.rt.status, "c2") }, codes.FailedPrecondition},
		{"empty command is InvalidArgument", &runtimeapi.ExecSyncRequest{ContainerId: "c1"}, nil, codes.InvalidArgument},
		{"exec timing out is DeadlineExceeded", &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"sleep", "9"}, Timeout: 1},
			func(f *fixture) { f.rt.execErr = fmt.Errorf("exec: %w", context.DeadlineExceeded) }, codes.DeadlineExceeded},
		{"container exiting meanwhile is FailedPrecondition", &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"true"}},
			func(f *fixture) { f.rt.execErr = runtime.ErrNotRunning }, codes.FailedPrecondition},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.addPod("p1", "ns", nil)
			f.addContainer("c1", "p1", runtime.StateRunning, nil)
			f.addContainer("c2", "p1", runtime.StateRunning, nil)
			if c.setup != nil {
				c.setup(f)
			}
			_, err := execSync(t, f, c.req)
			wantCode(t, err, c.code)
		})
	}
}

func TestExecWithAnEmptyCommandIsInvalidArgument(t *testing.T) {
	f := newFixture(t)
	f.addPod("p1", "ns", nil)
	f.addContainer("c1", "p1", runtime.StateRunning, nil)
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ExecResponse, error) {
		return f.s.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Stdout: true})
	})
	wantCode(t, err, codes.InvalidArgument)
}

func TestPortForwardToAMissingPodIsNotFound(t *testing.T) {
	f := newFixture(t)
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.PortForwardResponse, error) {
		return f.s.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "gone", Port: []int32{80}})
	})
	wantCode(t, err, codes.NotFound)
}
