package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/crivet/crivet/checkpoint"
	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	if cfg.GetMetadata().GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "create container: config.metadata.name is required")
	}
	// The pod, and so its namespace, come from what crivet stored at
	// RunPodSandbox; req.SandboxConfig is the client's word and is ignored
	// for every decision.
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	// An image that is a checkpoint archive's path restores the container
	// it holds (KEP-2008), from the image the archive records: that image
	// must be on the node and is admitted under this pod's namespace
	// exactly as if the request had named it.
	restore, cfg, err := s.restoreFrom(cfg)
	if err != nil {
		return nil, err
	}
	img, err := s.images.Get(cfg.GetImage().GetImage())
	if err != nil {
		return nil, fmt.Errorf("create container %s: image %q: %w", cfg.GetMetadata().GetName(), cfg.GetImage().GetImage(), err)
	}
	if restore != nil {
		if err := checkpoint.SameImage(restore, img.ID); err != nil {
			return nil, fmt.Errorf("create container %s: %w", cfg.GetMetadata().GetName(), err)
		}
	}
	adm, err := s.admit(ctx, pod, img, cfg.GetImage().GetUserSpecifiedImage(), cfg.GetMetadata().GetName(), false)
	if err != nil {
		return nil, err
	}
	var warnings []string
	if adm.Warning != "" {
		warnings = append(warnings, adm.Warning)
	}
	// Image volumes (KEP-4639) put code from the same node store into the
	// container: the same namespace policy applies to each.
	var volumes []*image.Image
	for _, m := range cfg.GetMounts() {
		if m.GetImage() == nil {
			continue
		}
		vimg, err := s.images.Get(m.GetImage().GetImage())
		if err != nil {
			return nil, fmt.Errorf("create container: image volume %q: %w", m.GetImage().GetImage(), err)
		}
		vadm, err := s.admit(ctx, pod, vimg, m.GetImage().GetUserSpecifiedImage(), cfg.GetMetadata().GetName(), true)
		if err != nil {
			return nil, err
		}
		if vadm.Warning != "" {
			warnings = append(warnings, "image volume "+m.GetImage().GetImage()+": "+vadm.Warning)
		}
		volumes = append(volumes, vimg)
	}

	c, err := s.lc.CreateContainer(ctx, lifecycle.CreateRequest{Pod: pod, Image: img, Identity: adm.Identity, Config: cfg, Volumes: volumes, SignatureWarnings: warnings, Restore: restore})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

// restoreFrom opens the checkpoint archive cfg's image names, if it
// names one, and returns it with a copy of cfg naming the image the
// archive records instead (as the image, and as what the user specified).
func (s *Server) restoreFrom(cfg *runtimeapi.ContainerConfig) (*checkpoint.Archive, *runtimeapi.ContainerConfig, error) {
	a, err := checkpoint.Open(cfg.GetImage().GetImage())
	if errors.Is(err, checkpoint.ErrNotArchive) {
		return nil, cfg, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("create container %s: %w", cfg.GetMetadata().GetName(), err)
	}
	name := a.ImageName()
	if name == "" {
		return nil, nil, fmt.Errorf("create container %s: %w: %s records no image", cfg.GetMetadata().GetName(), checkpoint.ErrInvalid, a.Path)
	}
	out := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	out.Image = &runtimeapi.ImageSpec{Image: name, UserSpecifiedImage: name}
	return a, out, nil
}

// admit asks the image service for the create-time decision under the
// stored pod's namespace (never the request's) and returns the identity
// the image was verified as (and any refusal warn mode admitted). volume:
// img is an image volume of the container.
func (s *Server) admit(ctx context.Context, pod *sandbox.Pod, img *image.Image, userRef, container string, volume bool) (image.Admission, error) {
	adm, err := s.images.AdmitFor(ctx, image.AdmitRequest{Image: img, UserRef: userRef, Namespace: pod.Namespace(), Pod: pod.ID, Container: container, Volume: volume})
	if err != nil {
		return image.Admission{}, fmt.Errorf("create container %s: %w", container, err)
	}
	return adm, nil
}
