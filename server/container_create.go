package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/oci/checkpoint"
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
	restore, err := openArchive(cfg)
	if err != nil {
		return nil, err
	}
	var (
		img      *image.Image
		adm      image.Admission
		warnings []string
	)
	if restore == nil {
		if img, err = s.images.Get(cfg.GetImage().GetImage()); err != nil {
			return nil, fmt.Errorf("create container %s: image %q: %w", cfg.GetMetadata().GetName(), cfg.GetImage().GetImage(), err)
		}
		if adm, err = s.admit(ctx, pod, img, cfg.GetImage().GetUserSpecifiedImage(), cfg.GetMetadata().GetName(), false); err != nil {
			return nil, err
		}
		if adm.Warning != "" {
			warnings = append(warnings, adm.Warning)
		}
		// An image built from a checkpoint archive, admitted just now
		// like any image, restores the container it holds the same way.
		var release func() error
		if restore, release, err = s.images.OpenCheckpoint(img); err != nil {
			return nil, fmt.Errorf("create container %s: %w", cfg.GetMetadata().GetName(), err)
		}
		if release != nil {
			defer release()
		}
	}
	if restore != nil {
		if cfg, img, adm, err = s.admitRestore(ctx, pod, cfg, restore); err != nil {
			return nil, err
		}
		if adm.Warning != "" {
			warnings = append(warnings, "checkpoint's image "+img.ID+": "+adm.Warning)
		}
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

// openArchive opens the checkpoint archive cfg's image names, if it
// names one (nil otherwise).
func openArchive(cfg *runtimeapi.ContainerConfig) (*checkpoint.Archive, error) {
	a, err := checkpoint.Open(cfg.GetImage().GetImage())
	if errors.Is(err, checkpoint.ErrNotArchive) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.GetMetadata().GetName(), err)
	}
	return a, nil
}

// admitRestore finds the image checkpoint a records, checks it is the one
// the checkpoint was made from, and admits it under the pod's namespace
// with the recorded name as user_specified_image. It returns a copy of
// cfg naming that image, the image and its admission.
func (s *Server) admitRestore(ctx context.Context, pod *sandbox.Pod, cfg *runtimeapi.ContainerConfig, a *checkpoint.Archive) (*runtimeapi.ContainerConfig, *image.Image, image.Admission, error) {
	name := a.ImageName()
	what := cfg.GetMetadata().GetName()
	if name == "" {
		return nil, nil, image.Admission{}, fmt.Errorf("create container %s: %w: %s records no image", what, checkpoint.ErrInvalid, a.Source())
	}
	img, err := s.images.Get(name)
	if err != nil {
		return nil, nil, image.Admission{}, fmt.Errorf("create container %s: restore from %s: its image %q: %w", what, a.Source(), name, err)
	}
	if err := checkpoint.SameImage(a, img.ID); err != nil {
		return nil, nil, image.Admission{}, fmt.Errorf("create container %s: %w", what, err)
	}
	adm, err := s.admit(ctx, pod, img, name, what, false)
	if err != nil {
		return nil, nil, image.Admission{}, err
	}
	out := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	out.Image = &runtimeapi.ImageSpec{Image: name, UserSpecifiedImage: name}
	return out, img, adm, nil
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
