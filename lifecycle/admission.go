package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/checkpoint"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// admitted is what a container create may run, each image decided by the
// image service under the pod's namespace before anything is made.
type admitted struct {
	// config is the request's, or (restoring) a copy naming the image
	// the checkpoint records.
	config *runtimeapi.ContainerConfig
	image  *image.Image
	// identity is the reference the image was verified as.
	identity string
	// volumes are the admitted images of config's image mounts, by the
	// mount's index in config.Mounts.
	volumes map[int]*image.Image
	// warnings are refusals warn mode admitted; kept in the record.
	warnings []string
	// restore is the checkpoint the container is restored from, or nil;
	// release (if set) unmounts a checkpoint image's archive.
	restore *checkpoint.Archive
	release func() error
}

// admit finds and admits every image a create of cfg in pod would run:
// the container's image as the pod spec names it (or, for a checkpoint,
// the image the checkpoint records), and each image volume. The decision
// is the image service's (image/trust); the namespace is the stored
// pod's, never the request's. The caller calls a.done when the create is
// over.
func (m *Manager) admit(ctx context.Context, pod *sandbox.Pod, cfg *runtimeapi.ContainerConfig) (_ *admitted, err error) {
	name := cfg.GetMetadata().GetName()
	a := &admitted{config: cfg, volumes: map[int]*image.Image{}}
	defer func() {
		if err != nil {
			a.done()
		}
	}()
	// An image that is a checkpoint archive's path restores the container
	// it holds (KEP-2008), from the image the archive records.
	a.restore, err = checkpoint.Open(cfg.GetImage().GetImage())
	switch {
	case errors.Is(err, checkpoint.ErrNotArchive):
		a.restore = nil
	case err != nil:
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	if a.restore == nil {
		ref := cfg.GetImage().GetImage()
		if a.image, err = m.images.Get(ref); err != nil {
			return nil, fmt.Errorf("create container %s: image %q: %w", name, ref, err)
		}
		if err := m.decide(ctx, pod, a, a.image, cfg.GetImage().GetUserSpecifiedImage(), false, ""); err != nil {
			return nil, err
		}
		// An image built from a checkpoint archive, admitted just now
		// like any image, restores the container it holds the same way.
		if a.restore, a.release, err = m.images.OpenCheckpoint(a.image); err != nil {
			return nil, fmt.Errorf("create container %s: %w", name, err)
		}
	}
	if a.restore != nil {
		if err := m.admitRestore(ctx, pod, a); err != nil {
			return nil, err
		}
	}
	// Image volumes (KEP-4639) put code from the same node store into the
	// container: the same namespace policy applies to each.
	for i, mnt := range a.config.GetMounts() {
		if mnt.GetImage() == nil {
			continue
		}
		ref := mnt.GetImage().GetImage()
		img, err := m.images.Get(ref)
		if err != nil {
			return nil, fmt.Errorf("create container %s: image volume %q: %w", name, ref, err)
		}
		if err := m.decide(ctx, pod, a, img, mnt.GetImage().GetUserSpecifiedImage(), true, "image volume "+ref+": "); err != nil {
			return nil, err
		}
		a.volumes[i] = img
	}
	return a, nil
}

// admitRestore finds the image a's checkpoint records, checks it is the
// one the checkpoint was made from, and admits it under the pod's
// namespace with the recorded name as user_specified_image, as if the
// request had named it; a.config becomes a copy naming that image.
func (m *Manager) admitRestore(ctx context.Context, pod *sandbox.Pod, a *admitted) error {
	what := a.config.GetMetadata().GetName()
	ref := a.restore.ImageName()
	if ref == "" {
		return fmt.Errorf("create container %s: %w: %s records no image", what, checkpoint.ErrInvalid, a.restore.Source())
	}
	img, err := m.images.Get(ref)
	if err != nil {
		return fmt.Errorf("create container %s: restore from %s: its image %q: %w", what, a.restore.Source(), ref, err)
	}
	if err := checkpoint.SameImage(a.restore, img.ID); err != nil {
		return fmt.Errorf("create container %s: %w", what, err)
	}
	if err := m.decide(ctx, pod, a, img, ref, false, "checkpoint's image "+img.ID+": "); err != nil {
		return err
	}
	a.image = img
	cfg := proto.Clone(a.config).(*runtimeapi.ContainerConfig)
	cfg.Image = &runtimeapi.ImageSpec{Image: ref, UserSpecifiedImage: ref}
	a.config = cfg
	return nil
}

// decide asks the image service for the create-time decision on img as
// userRef names it. The container's own image sets a.identity; a refusal
// warn mode admitted is kept as a warning, prefixed with what it is about.
func (m *Manager) decide(ctx context.Context, pod *sandbox.Pod, a *admitted, img *image.Image, userRef string, volume bool, what string) error {
	name := a.config.GetMetadata().GetName()
	adm, err := m.images.AdmitFor(ctx, image.AdmitRequest{Image: img, UserRef: userRef, Namespace: pod.Namespace(), Pod: pod.ID, Container: name, Volume: volume})
	if err != nil {
		return fmt.Errorf("create container %s: %w", name, err)
	}
	if !volume {
		a.identity = adm.Identity
	}
	if adm.Warning != "" {
		a.warnings = append(a.warnings, what+adm.Warning)
	}
	return nil
}

// done releases what admission holds (a checkpoint image's mount).
func (a *admitted) done() {
	if a.release != nil {
		_ = a.release()
		a.release = nil
	}
}
