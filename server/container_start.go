package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *criServer) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	c, err := s.pods.GetContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := s.lc.StartContainer(ctx, c); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}
