package server

import (
	"context"
	"fmt"

	"github.com/crivet/crivet/oci/spec"
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
	if err := s.rt.Update(ctx, c.ID, lr); err != nil {
		return nil, fmt.Errorf("update container %s: %w", c.ID, err)
	}
	// Remember the new limits so ContainerStatus reports them. The record
	// shares its config with the pods service's stored one: change a copy,
	// and let AddContainer store it (or, failing, leave the old limits).
	cfg := proto.Clone(c.Config).(*runtimeapi.ContainerConfig)
	if cfg == nil {
		cfg = &runtimeapi.ContainerConfig{}
	}
	if cfg.Linux == nil {
		cfg.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	cfg.Linux.Resources = res
	c.Config = cfg
	if err := s.pods.AddContainer(c); err != nil {
		return nil, err
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
