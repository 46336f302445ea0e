package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if errors.Is(err, sandbox.ErrNotFound) {
		// CRI: stopping a pod that is not there succeeds.
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.stopPodProcesses(ctx, pod); err != nil {
		return nil, toStatus(err)
	}
	if err := s.pods.Stop(ctx, pod.ID); err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// stopPodProcesses stops every container of the pod, then its infra
// process; each stop is bounded by its grace period.
func (s *Server) stopPodProcesses(ctx context.Context, pod *sandbox.Pod) error {
	var errs []error
	for _, c := range s.pods.Containers(pod.ID) {
		if err := s.stopContainer(ctx, c, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if pod.InfraID != "" {
		if err := s.stopInfra(ctx, pod); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", pod.ID, err)
	}
	return nil
}

func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if errors.Is(err, sandbox.ErrNotFound) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.removePod(ctx, pod); err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// removePod marks the pod Removing, removes its containers (each stopped
// first), its infra container and then the pod itself (CNI DEL, pins,
// files, record). Every step takes a part already gone as done; start-up
// recovery runs it again for a pod still Removing or Creating.
func (s *Server) removePod(ctx context.Context, pod *sandbox.Pod) error {
	if pod.Phase != sandbox.Removing {
		if err := s.pods.MarkRemoving(pod.ID); err != nil {
			return fmt.Errorf("remove pod sandbox %s: %w", pod.ID, err)
		}
	}
	for _, c := range s.pods.Containers(pod.ID) {
		if err := s.removeContainer(ctx, c); err != nil {
			return fmt.Errorf("remove pod sandbox %s: %w", pod.ID, err)
		}
	}
	// By the pod's ID, recorded or not: a crash can come between the
	// infra's runc create and the record naming it.
	if err := s.removeInfra(ctx, pod.ID); err != nil {
		return fmt.Errorf("remove pod sandbox %s: %w", pod.ID, err)
	}
	return s.pods.Remove(ctx, pod.ID)
}
