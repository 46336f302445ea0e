package server

import (
	"context"

	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	if cfg.GetMetadata() == nil {
		return nil, status.Error(codes.InvalidArgument, "run pod sandbox: config.metadata is required")
	}
	if h := req.GetRuntimeHandler(); h != "" && h != defaultHandler {
		return nil, status.Errorf(codes.InvalidArgument, "run pod sandbox: unknown runtime handler %q (crivet has %q)", h, defaultHandler)
	}
	// The infra process starts before the pod is recorded as created: a
	// crash in between leaves a Creating pod, which start-up recovery
	// removes with whatever of its infra exists.
	var complete func(*sandbox.Pod) error
	if needsInfra(cfg) {
		complete = func(p *sandbox.Pod) error { return s.startInfra(ctx, p) }
	}
	pod, err := s.pods.Run(ctx, cfg, req.GetRuntimeHandler(), complete)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: pod.ID}, nil
}

// defaultHandler is the only runtime handler: runc.
const defaultHandler = "runc"

// needsInfra: only a pod whose containers share one PID namespace needs a
// process to own that namespace; everything else is pinned.
func needsInfra(cfg *runtimeapi.PodSandboxConfig) bool {
	return cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtimeapi.NamespaceMode_POD
}
