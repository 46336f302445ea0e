package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	c, err := s.pods.GetContainer(req.GetContainerId())
	if err != nil {
		return nil, toStatus(err)
	}
	st, err := s.rt.Status(ctx, c.ID)
	if err != nil {
		return nil, toStatus(err)
	}
	if st.State != "created" {
		return nil, status.Errorf(codes.FailedPrecondition, "start container %s: container is %s, not created", c.ID, st.State)
	}
	if err := s.rt.Start(ctx, c.ID); err != nil {
		return nil, toStatus(fmt.Errorf("start container %s: %w", c.ID, err))
	}
	s.events.publish(c.ID, c.PodID, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return &runtimeapi.StartContainerResponse{}, nil
}
