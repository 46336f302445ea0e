package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/crivet/crivet/oci/checkpoint"
	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/chrootarchive"
	"go.podman.io/storage/pkg/directory"
	"go.podman.io/storage/pkg/idtools"
	storagetypes "go.podman.io/storage/types"
	"golang.org/x/sys/unix"
)

// ErrNoIDMappedLayers: the storage driver cannot show image layers
// through an id-mapped mount on this kernel (overlay with id-mapped lower
// layers needs Linux 5.19, and 6.3 for the tmpfs and overlay sources
// crivet also maps). The store would fall back to a chowned copy of the
// whole image per mapping, which crivet refuses to make.
var ErrNoIDMappedLayers = errors.New("storage driver cannot id-map image layers")

// IDMapping is the user namespace a container runs in (a pod's, for
// hostUsers: false): its root filesystem must show the image's files
// owned by the host IDs their container IDs map to.
type IDMapping struct {
	UIDs, GIDs []specs.LinuxIDMapping
}

func storageIDMap(ms []specs.LinuxIDMapping) []idtools.IDMap {
	out := make([]idtools.IDMap, 0, len(ms))
	for _, m := range ms {
		out = append(out, idtools.IDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
	}
	return out
}

// CreateRootfs makes a container's writable layer on top of the image and
// mounts it; the returned path is the container's root filesystem. All
// writes of the container land in its own upper directory.
//
// With an ID mapping (nil: the node's user namespace), the store mounts
// the image's layers id-mapped (overlay over id-mapped lower layers, no
// copy) and gives the upper directory to the mapped root; see
// exposeRootfs for where the root filesystem then appears.
//
// Creations from one image share its lock (the store makes each creation
// atomic against a removal of the image); only a removal or a pull's write
// phase of that image excludes them. The layer and its record are
// volatile: written without syncs, which matter only if the machine goes
// down, and then every container is gone anyway (kubelet recreates them).
func (s *Service) CreateRootfs(containerID string, img *Image, idmap *IDMapping) (string, error) {
	opts := &storage.ContainerOptions{Volatile: true}
	if idmap != nil {
		uids, gids := storageIDMap(idmap.UIDs), storageIDMap(idmap.GIDs)
		d, err := s.store.GraphDriver()
		if err != nil {
			return "", fmt.Errorf("rootfs for %s: %w", containerID, err)
		}
		if !d.SupportsShifting(uids, gids) {
			return "", fmt.Errorf("rootfs for %s: %w (driver %s, kernel too old or id-mapped mounts disabled)", containerID, ErrNoIDMappedLayers, d.String())
		}
		opts.IDMappingOptions = storagetypes.IDMappingOptions{UIDMap: uids, GIDMap: gids}
	}
	unlock := s.locks.RLock(img.StorageID())
	defer unlock()
	if _, err := s.store.CreateContainer(containerID, nil, img.StorageID(), "", "", opts); err != nil {
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
	if idmap != nil {
		if path, err = s.exposeRootfs(containerID, path); err != nil {
			_ = s.RemoveRootfs(containerID)
			return "", err
		}
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
	if c, err := s.store.Container(containerID); err == nil && (len(c.UIDMap) > 0 || len(c.GIDMap) > 0) {
		return s.exposeRootfs(containerID, path)
	}
	return path, nil
}

// exposedRootfs is where the root filesystem of a container in a user
// namespace appears: <runroot>/rootfs/<id>, a bind mount of the store's
// mount point.
func (s *Service) exposedRootfs(containerID string) string {
	return filepath.Join(s.cfg.RunRoot, "rootfs", containerID)
}

// exposeRootfs binds the store's mount point of a container in a user
// namespace where that namespace's root can reach it. runc sets up the
// root filesystem from inside the container's user namespace, where the
// host's root is nobody: every directory on the path needs search
// permission for others, and the store keeps its layers under 0700
// directories (which it should: they hold every image's files). The run
// root gets search permission only (0711: nothing in it can be listed,
// and what lies below keeps its own modes), and the bind mount's own root
// is the container's upper directory, owned by the mapped root.
func (s *Service) exposeRootfs(containerID, mounted string) (string, error) {
	st, err := os.Stat(s.cfg.RunRoot)
	if err != nil {
		return "", fmt.Errorf("expose rootfs of %s: %w", containerID, err)
	}
	if st.Mode().Perm()&0o011 != 0o011 {
		if err := os.Chmod(s.cfg.RunRoot, st.Mode().Perm()|0o011); err != nil {
			return "", fmt.Errorf("expose rootfs of %s: %w", containerID, err)
		}
	}
	dir := filepath.Dir(s.exposedRootfs(containerID))
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", fmt.Errorf("expose rootfs of %s: %w", containerID, err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", fmt.Errorf("expose rootfs of %s: %w", containerID, err)
	}
	target := s.exposedRootfs(containerID)
	if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("expose rootfs of %s: %w", containerID, err)
	}
	// A mount already there (MountRootfs after a daemon restart) is kept.
	var tst unix.Statfs_t
	if err := unix.Statfs(target, &tst); err == nil && tst.Type == unix.OVERLAYFS_SUPER_MAGIC {
		return target, nil
	}
	if err := unix.Mount(mounted, target, "", unix.MS_BIND, ""); err != nil {
		return "", fmt.Errorf("expose rootfs of %s: bind %s: %w", containerID, mounted, err)
	}
	return target, nil
}

// unexposeRootfs undoes exposeRootfs; nothing there is fine.
func (s *Service) unexposeRootfs(containerID string) error {
	target := s.exposedRootfs(containerID)
	for {
		err := unix.Unmount(target, unix.MNT_DETACH)
		if err == nil {
			continue // a bind made twice
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		return fmt.Errorf("unmount rootfs of %s: %w", containerID, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove rootfs of %s: %w", containerID, err)
	}
	return nil
}

// RemoveRootfs unmounts and deletes a container's layer; a missing one is
// not an error, so removal can be retried after a crash.
func (s *Service) RemoveRootfs(containerID string) error {
	if err := s.unexposeRootfs(containerID); err != nil {
		return err
	}
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

// LayerUsage is what a container's writable layer holds.
type LayerUsage struct {
	Bytes uint64
	// Inodes is 0 when the graph driver has no directory of the layer's
	// own files to count (vfs keeps a full copy of the root filesystem).
	Inodes uint64
}

// RootfsUsage measures a container's writable layer. With overlay it
// walks the layer's upper directory once for both bytes and inodes (the
// bytes are what the store's DiffSize counts there; kubelet's Summary API
// reports both, as containerd's and CRI-O's walks of the upper directory
// give them). Other drivers only tell the size of the diff.
func (s *Service) RootfsUsage(containerID string) (LayerUsage, error) {
	c, err := s.store.Container(containerID)
	if err != nil {
		return LayerUsage{}, fmt.Errorf("rootfs of %s: %w", containerID, err)
	}
	if d, err := s.store.GraphDriver(); err == nil {
		if md, err := d.Metadata(c.LayerID); err == nil && md["UpperDir"] != "" {
			du, err := directory.Usage(md["UpperDir"])
			if err != nil {
				return LayerUsage{}, fmt.Errorf("rootfs of %s: %w", containerID, err)
			}
			return LayerUsage{Bytes: uint64(du.Size), Inodes: uint64(du.InodeCount)}, nil
		}
	}
	n, err := s.store.DiffSize("", c.LayerID)
	if err != nil {
		return LayerUsage{}, fmt.Errorf("rootfs of %s: %w", containerID, err)
	}
	return LayerUsage{Bytes: uint64(n)}, nil
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

// RootfsDiff is a container's changes to its image as an uncompressed
// layer tar (deletions as whiteouts): what a checkpoint carries besides
// the processes.
func (s *Service) RootfsDiff(containerID string) (io.ReadCloser, error) {
	c, err := s.store.Container(containerID)
	if err != nil {
		return nil, fmt.Errorf("rootfs diff of %s: %w", containerID, err)
	}
	none := archive.Uncompressed
	rc, err := s.store.Diff("", c.LayerID, &storage.DiffOptions{Compression: &none})
	if err != nil {
		return nil, fmt.Errorf("rootfs diff of %s: %w", containerID, err)
	}
	return rc, nil
}

// ApplyRootfsDiff applies a layer tar (a checkpoint's rootfs-diff.tar) to
// a container's mounted root filesystem, whiteouts included, then removes
// the paths another runtime's archive lists as deleted. Every path is
// resolved inside rootfs: the tar is unpacked chrooted there (the
// archive, and the links it makes, may come from another node).
func (s *Service) ApplyRootfsDiff(rootfs string, diff io.Reader, deleted []string) error {
	if diff != nil {
		if _, err := chrootarchive.ApplyUncompressedLayer(rootfs, diff, nil); err != nil {
			return fmt.Errorf("apply rootfs diff to %s: %w", rootfs, err)
		}
	}
	for _, p := range deleted {
		target, err := securejoin.SecureJoin(rootfs, p)
		if err != nil {
			return fmt.Errorf("apply rootfs diff to %s: deleted file %q: %w", rootfs, p, err)
		}
		if target == filepath.Clean(rootfs) {
			continue
		}
		if err := os.RemoveAll(target); err != nil {
			return fmt.Errorf("apply rootfs diff to %s: %w", rootfs, err)
		}
	}
	return nil
}

// OpenCheckpoint returns the checkpoint held by an image built from a
// checkpoint archive (its manifest carries a checkpoint annotation, see
// checkpoint.ImageAnnotations), with the image mounted read only until
// release is called; for any other image, nil. The image itself is
// admitted by the caller like any image; this only reads it.
func (s *Service) OpenCheckpoint(img *Image) (_ *checkpoint.Archive, release func() error, err error) {
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	key := storage.ImageDigestBigDataKey
	if img.Record != nil && img.Record.ManifestDigest != "" {
		key = storage.ImageDigestManifestBigDataNamePrefix + "-" + img.Record.ManifestDigest.String()
	}
	data, err := s.store.ImageBigData(img.StorageID(), key)
	if err != nil && key != storage.ImageDigestBigDataKey {
		data, err = s.store.ImageBigData(img.StorageID(), storage.ImageDigestBigDataKey)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: manifest: %w", img.ID, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, fmt.Errorf("image %s: manifest: %w", img.ID, err)
	}
	if !checkpoint.IsImage(m.Annotations) {
		return nil, nil, nil
	}
	root, err := s.MountImage(img)
	if err != nil {
		return nil, nil, err
	}
	release = func() error { return s.UnmountImage(img.ID) }
	a, err := checkpoint.OpenDir(root)
	if err != nil {
		_ = release()
		return nil, nil, fmt.Errorf("checkpoint image %s: %w", img.ID, err)
	}
	return a, release, nil
}
