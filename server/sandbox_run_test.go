package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestRunPodSandboxInvalidRequestsAreInvalidArgumentAndRunNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		req  *runtimeapi.RunPodSandboxRequest
	}{
		{"no config", &runtimeapi.RunPodSandboxRequest{}},
		{"no metadata", &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Hostname: "h"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.RunPodSandboxResponse, error) {
				return f.s.RunPodSandbox(ctx, c.req)
			})
			wantCode(t, err, codes.InvalidArgument)
			wantCalls(t, "lifecycle", f.lc.got())
		})
	}
}

func TestRunPodSandboxAcceptsTheDefaultAndTheEmptyHandler(t *testing.T) {
	for _, h := range []string{"", defaultHandler} {
		f := newFixture(t)
		cfg := podConfig("a", "ns", nil)
		resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.RunPodSandboxResponse, error) {
			return f.s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: h})
		})
		if err != nil {
			t.Fatalf("handler %q: %v", h, err)
		}
		if resp.PodSandboxId != "pod-new" {
			t.Fatalf("handler %q: id %q, want the lifecycle's pod-new", h, resp.PodSandboxId)
		}
		if len(f.lc.runCfgs) != 1 || f.lc.runCfgs[0] != cfg || f.lc.runHandlers[0] != h {
			t.Fatalf("handler %q: lifecycle got %v %q", h, f.lc.runCfgs, f.lc.runHandlers)
		}
	}
}

// The lifecycle refuses a handler that is not configured before making
// anything (its error names the configured ones); the client gets
// InvalidArgument with that text.
func TestRunPodSandboxUnknownHandlerIsInvalidArgumentNamingTheHandlers(t *testing.T) {
	f := newFixture(t)
	f.lc.err = fmt.Errorf("run pod sandbox: unknown runtime handler %q (configured: %q, %q): %w", "kata", defaultHandler, "test-handler", runtime.ErrInvalidArgument)
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.RunPodSandboxResponse, error) {
		return f.s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("a", "ns", nil), RuntimeHandler: "kata"})
	})
	wantCode(t, err, codes.InvalidArgument)
	if st, _ := status.FromError(err); !strings.Contains(st.Message(), `"kata"`) || !strings.Contains(st.Message(), `"test-handler"`) {
		t.Fatalf("message %q does not name the handler asked for and those configured", st.Message())
	}
}

func TestRunPodSandboxReservedNameIsAlreadyExists(t *testing.T) {
	f := newFixture(t)
	f.lc.err = fmt.Errorf("run pod sandbox a_ns: %w by p0", sandbox.ErrNameReserved)
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.RunPodSandboxResponse, error) {
		return f.s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("a", "ns", nil)})
	})
	wantCode(t, err, codes.AlreadyExists)
}
