package image

import (
	"errors"
	"fmt"
	"strings"

	"go.podman.io/storage"
)

// CreateRootfs makes a container's writable layer on top of the image and
// mounts it; the returned path is the container's root filesystem. All
// writes of the container land in its own upper directory.
//
// Creations from one image share its lock (the store makes each creation
// atomic against a removal of the image); only a removal or a pull's write
// phase of that image excludes them. The layer and its record are
// volatile: written without syncs, which matter only if the machine goes
// down, and then every container is gone anyway (kubelet recreates them).
func (s *Service) CreateRootfs(containerID string, img *Image) (string, error) {
	unlock := s.locks.RLock(img.StorageID())
	defer unlock()
	if _, err := s.store.CreateContainer(containerID, nil, img.StorageID(), "", "", &storage.ContainerOptions{Volatile: true}); err != nil {
		if errors.Is(err, storage.ErrImageUnknown) {
			return "", fmt.Errorf("rootfs for %s: image %s: %w", containerID, img.ID, ErrNotFound)
		}
		return "", fmt.Errorf("rootfs for %s: %w", containerID, err)
	}
	path, err := s.store.Mount(containerID, "")
	if err != nil {
		_ = s.store.DeleteContainer(containerID)
		return "", fmt.Errorf("mount rootfs of %s: %w", containerID, err)
	}
	return path, nil
}

// MountRootfs mounts an existing container's root filesystem again (after
// a reboot, or when another holder unmounted it).
func (s *Service) MountRootfs(containerID string) (string, error) {
	path, err := s.store.Mount(containerID, "")
	if err != nil {
		return "", fmt.Errorf("mount rootfs of %s: %w", containerID, err)
	}
	return path, nil
}

// RemoveRootfs unmounts and deletes a container's layer; a missing one is
// not an error, so removal can be retried after a crash.
func (s *Service) RemoveRootfs(containerID string) error {
	if _, err := s.store.Unmount(containerID, true); err != nil && !alreadyGone(err) {
		return fmt.Errorf("unmount rootfs of %s: %w", containerID, err)
	}
	if err := s.store.DeleteContainer(containerID); err != nil && !alreadyGone(err) {
		return fmt.Errorf("remove rootfs of %s: %w", containerID, err)
	}
	return nil
}

// alreadyGone reports the errors storage gives for an ID it does not know:
// Unmount of a deleted container falls back to treating the ID as a layer
// (ErrLayerUnknown), DeleteContainer says ErrNotAContainer. A removal that
// a crash interrupted after either step must not fail on them forever.
func alreadyGone(err error) bool {
	return errors.Is(err, storage.ErrContainerUnknown) || errors.Is(err, storage.ErrNotAContainer) ||
		errors.Is(err, storage.ErrLayerUnknown) || errors.Is(err, storage.ErrNotALayer)
}

// ListRootfs returns the IDs of every container layer in the store; start-up
// recovery removes those no container record owns.
func (s *Service) ListRootfs() ([]string, error) {
	cs, err := s.store.Containers()
	if err != nil {
		return nil, fmt.Errorf("list rootfs: %w", err)
	}
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	return ids, nil
}

// ReconcileImageMounts makes the mount count of every image's top layer
// what the container records say (want: image ID → image volumes held).
// Storage counts MountImage calls persistently, and a crash between a
// MountImage and the record of it, or between an UnmountImage and the
// record update, leaves the count off by one either way; only the
// excess can be corrected (a missing mount belongs to a container that
// cannot be repaired by mounting again).
func (s *Service) ReconcileImageMounts(want map[string]int) ([]string, error) {
	imgs, err := s.store.Images()
	if err != nil {
		return nil, fmt.Errorf("reconcile image mounts: %w", err)
	}
	// Images sharing a top layer share its count.
	wantLayer := map[string]int{}
	byLayer := map[string]string{}
	for _, img := range imgs {
		if img.TopLayer == "" {
			continue
		}
		wantLayer[img.TopLayer] += want[img.ID] + want["sha256:"+img.ID]
		byLayer[img.TopLayer] = img.ID
	}
	var fixed []string
	var errs []error
	for layer, imgID := range byLayer {
		n, err := s.store.Mounted(layer)
		if err != nil || n <= wantLayer[layer] {
			continue
		}
		for ; n > wantLayer[layer]; n-- {
			if _, err := s.store.UnmountImage(imgID, false); err != nil && !alreadyGone(err) && !errors.Is(err, storage.ErrImageUnknown) {
				errs = append(errs, fmt.Errorf("unmount image %s: %w", imgID, err))
				break
			}
		}
		fixed = append(fixed, imgID)
	}
	return fixed, errors.Join(errs...)
}

// RootfsUsage is the bytes a container's writable layer holds.
func (s *Service) RootfsUsage(containerID string) (uint64, error) {
	c, err := s.store.Container(containerID)
	if err != nil {
		return 0, fmt.Errorf("rootfs of %s: %w", containerID, err)
	}
	n, err := s.store.DiffSize("", c.LayerID)
	if err != nil {
		return 0, fmt.Errorf("rootfs of %s: %w", containerID, err)
	}
	return uint64(n), nil
}

// MountImage mounts an image read-only for use as a volume (KEP-4639);
// each call must be paired with UnmountImage (storage counts mounts).
func (s *Service) MountImage(img *Image) (string, error) {
	path, err := s.store.MountImage(img.StorageID(), []string{"ro"}, "")
	if err != nil {
		return "", fmt.Errorf("mount image %s: %w", img.ID, err)
	}
	return path, nil
}

// UnmountImage releases one MountImage; an image already gone is fine.
func (s *Service) UnmountImage(id string) error {
	if _, err := s.store.UnmountImage(strings.TrimPrefix(id, "sha256:"), false); err != nil && !errors.Is(err, storage.ErrImageUnknown) && !alreadyGone(err) {
		return fmt.Errorf("unmount image %s: %w", id, err)
	}
	return nil
}
