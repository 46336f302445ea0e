package server

import (
	"context"
	"fmt"

	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	c, err := s.pods.GetContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	res := req.GetLinux()
	if res == nil {
		return &runtimeapi.UpdateContainerResourcesResponse{}, nil
	}
	lr, err := spec.Resources(res)
	if err != nil {
		// spec's sentinels (ErrInvalid, ErrUnsupported) get their codes in
		// the interceptor, as at CreateContainer.
		return nil, fmt.Errorf("update container %s: %w", c.ID, err)
	}
	if s.resPlug != nil {
		if lr, err = s.resPlug.AdjustResources(ctx, c, lr); err != nil {
			return nil, fmt.Errorf("update container %s: %w", c.ID, err)
		}
	}
	if err := s.rt.Update(ctx, c.ID, lr); err != nil {
		return nil, fmt.Errorf("update container %s: %w", c.ID, err)
	}
	// Remember the new limits so ContainerStatus reports them. The record
	// is changed in place by the pods service, never re-added: a removal
	// that ran while runc applied the limits must not bring the record
	// back, nor may a Removing record turn Created again.
	if err := s.pods.UpdateContainer(c.ID, func(rec *sandbox.Container) {
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
		return nil, fmt.Errorf("update container %s: %w", c.ID, err)
	}
	if s.resPlug != nil {
		s.resPlug.ResourcesUpdated(ctx, c)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	id, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := s.rt.ReopenLog(ctx, id); err != nil {
		return nil, fmt.Errorf("reopen log of %s: %w", id, err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
