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
func (s *Service) CreateRootfs(containerID string, img *Image) (string, error) {
	unlock := s.locks.Lock(img.StorageID())
	defer unlock()
	if _, err := s.store.CreateContainer(containerID, nil, img.StorageID(), "", "", nil); err != nil {
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
	if _, err := s.store.Unmount(containerID, true); err != nil && !errors.Is(err, storage.ErrContainerUnknown) && !errors.Is(err, storage.ErrLayerUnknown) {
		return fmt.Errorf("unmount rootfs of %s: %w", containerID, err)
	}
	if err := s.store.DeleteContainer(containerID); err != nil && !errors.Is(err, storage.ErrContainerUnknown) {
		return fmt.Errorf("remove rootfs of %s: %w", containerID, err)
	}
	return nil
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
	if _, err := s.store.UnmountImage(strings.TrimPrefix(id, "sha256:"), false); err != nil && !errors.Is(err, storage.ErrImageUnknown) && !errors.Is(err, storage.ErrLayerUnknown) {
		return fmt.Errorf("unmount image %s: %w", id, err)
	}
	return nil
}
