package server

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *criServer) containerStatus(ctx context.Context, c *sandbox.Container) (*runtimeapi.ContainerStatus, error) {
	// Recorded, but its process state may be gone (the run root did not
	// survive a reboot): lifecycle says unknown rather than hide it.
	st, err := lifecycle.StateOf(s.rt.Status(ctx, c.ID))
	if err != nil {
		return nil, err
	}
	cs := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    c.Config.GetMetadata(),
		State:       lifecycle.CRIState(st.State),
		CreatedAt:   c.CreatedAt.UnixNano(),
		Image:       &runtimeapi.ImageSpec{Image: statusImage(c), UserSpecifiedImage: c.Config.GetImage().GetUserSpecifiedImage(), Annotations: c.Config.GetImage().GetAnnotations()},
		ImageRef:    c.ImageID,
		ImageId:     c.ImageID,
		Labels:      c.Config.GetLabels(),
		Annotations: c.Config.GetAnnotations(),
		Mounts:      c.Mounts,
		LogPath:     c.LogPath,
		Reason:      st.Reason,
		Message:     st.Message,
		User: &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: c.UID, Gid: c.GID, SupplementalGroups: c.Supplemental,
		}},
		Resources:  &runtimeapi.ContainerResources{Linux: c.Config.GetLinux().GetResources()},
		StopSignal: c.Config.GetStopSignal(),
	}
	if !st.StartedAt.IsZero() {
		cs.StartedAt = st.StartedAt.UnixNano()
	}
	if cs.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		cs.ExitCode = st.ExitCode
		if !st.FinishedAt.IsZero() {
			cs.FinishedAt = st.FinishedAt.UnixNano()
		}
	}
	return cs, nil
}

func (s *criServer) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := s.pods.GetContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	cs, err := s.containerStatus(ctx, c)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: cs}
	if req.GetVerbose() {
		info := map[string]any{"id": c.ID, "podID": c.PodID, "bundle": c.Bundle, "verifiedAs": c.ImageRef}
		if len(c.SignatureWarnings) > 0 {
			// Warn mode admitted what the policy refuses: say so wherever
			// the container is inspected.
			info["signaturePolicy"] = map[string]any{"outcome": "warned", "warnings": c.SignatureWarnings}
		}
		if st, err := s.rt.Status(ctx, c.ID); err == nil && st.Pid > 0 {
			info["pid"] = st.Pid // what crictl inspect users (and scripts) look for
		}
		raw, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(raw)}
	}
	return resp, nil
}

func (s *criServer) listContainers(ctx context.Context, f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	for _, c := range s.pods.ContainersView(f.GetPodSandboxId()) { // read only
		if f != nil {
			if f.Id != "" && !strings.HasPrefix(c.ID, f.Id) {
				continue
			}
			if !labelsMatch(c.Config.GetLabels(), f.LabelSelector) {
				continue
			}
		}
		st, err := lifecycle.StateOf(s.rt.Status(ctx, c.ID))
		if err != nil {
			continue // the runtime could not answer now
		}
		state := lifecycle.CRIState(st.State)
		if f.GetState() != nil && f.GetState().State != state {
			continue
		}
		out = append(out, &runtimeapi.Container{
			Id: c.ID, PodSandboxId: c.PodID, Metadata: c.Config.GetMetadata(),
			Image:    &runtimeapi.ImageSpec{Image: statusImage(c), UserSpecifiedImage: c.Config.GetImage().GetUserSpecifiedImage()},
			ImageRef: c.ImageID, ImageId: c.ImageID, State: state, CreatedAt: c.CreatedAt.UnixNano(),
			Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
		})
	}
	slices.SortFunc(out, func(a, b *runtimeapi.Container) int { return int(b.CreatedAt - a.CreatedAt) })
	return out
}

func (s *criServer) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: s.listContainers(ctx, req.GetFilter())}, nil
}

func (s *criServer) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	return sendBatches(s.listContainers(stream.Context(), req.GetFilter()), func(b []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: b})
	})
}

// statusImage is the image name a container reports: kubelet copies it
// into the pod's status.containerStatuses[].image unchanged, and waits for
// it to equal the pod spec's image after an image update. CreateContainer
// gets the image ID in image.image and the pod spec's string in
// user_specified_image, which create-time verification has proven names
// this very image; so that string is reported. Without one (a CRI client
// that sends only an ID or a name), the request's image is.
func statusImage(c *sandbox.Container) string {
	if u := c.Config.GetImage().GetUserSpecifiedImage(); u != "" {
		return u
	}
	return c.Config.GetImage().GetImage()
}
