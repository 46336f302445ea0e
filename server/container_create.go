package server

import (
	"context"

	"github.com/crivet/crivet/lifecycle"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer hands the request to the lifecycle, which finds the
// stored pod (its namespace, never req.SandboxConfig, is what the images
// are admitted under), admits every image the container would run and
// creates it.
func (s *criServer) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	if cfg.GetMetadata().GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "create container: config.metadata.name is required")
	}
	c, err := s.lc.CreateContainer(ctx, lifecycle.CreateRequest{PodID: req.GetPodSandboxId(), Config: cfg})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}
