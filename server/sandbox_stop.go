package server

import (
	"context"
	"errors"

	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *criServer) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if errors.Is(err, sandbox.ErrNotFound) {
		// CRI: stopping a pod that is not there succeeds.
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.lc.StopPod(ctx, pod); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (s *criServer) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if errors.Is(err, sandbox.ErrNotFound) {
		// CRI: removing a pod that is not there succeeds.
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.lc.RemovePod(ctx, pod); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}
