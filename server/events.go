package server

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// GetContainerEvents streams the lifecycle's container events, each with
// the pod's status as kubelet's evented PLEG wants it.
func (s *criServer) GetContainerEvents(req *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	ch, cancel := s.lc.Subscribe()
	defer cancel()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			resp := &runtimeapi.ContainerEventResponse{ContainerId: ev.ContainerID, ContainerEventType: ev.Type, CreatedAt: ev.Time.UnixNano()}
			if st, err := s.PodSandboxStatus(stream.Context(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: ev.PodID}); err == nil {
				resp.PodSandboxStatus, resp.ContainersStatuses = st.Status, st.ContainersStatuses
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}
