package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/spec"
	securejoin "github.com/cyphar/filepath-securejoin"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// checkImageVolume refuses an image volume the runtime must not build,
// before anything is made. An image volume is the image's content as it
// was verified: kubelet always asks for it read-only (KEP-4639), and a
// writable one would let the container change what a later create of the
// same image sees, so Readonly=false is a request error, not a request to
// quietly ignore.
func checkImageVolume(mnt *runtimeapi.Mount) error {
	if !mnt.GetReadonly() {
		return fmt.Errorf("%w: image volume %s: image volumes are read-only; the mount must set readonly", spec.ErrInvalid, mnt.GetContainerPath())
	}
	if p := mnt.GetImageSubPath(); p != "" {
		if filepath.IsAbs(p) {
			return fmt.Errorf("%w: image volume %s: sub path %q must be relative to the image root", spec.ErrInvalid, mnt.GetContainerPath(), p)
		}
		for _, part := range strings.Split(filepath.ToSlash(p), "/") {
			if part == ".." {
				return fmt.Errorf("%w: image volume %s: sub path %q must not contain '..'", spec.ErrInvalid, mnt.GetContainerPath(), p)
			}
		}
	}
	return nil
}

// imageVolumeSource is the host path runc bind-mounts for an image volume
// mounted at root: the image root, or its sub path. The sub path is
// resolved inside the image (a symlink in the image cannot point the
// mount at the host), and must exist: mounting a path the image does not
// have would hand the container an empty directory instead of an error.
func imageVolumeSource(root string, mnt *runtimeapi.Mount, img *image.Image) (string, error) {
	sub := mnt.GetImageSubPath()
	if sub == "" {
		return root, nil
	}
	path, err := securejoin.SecureJoin(root, sub)
	if err != nil {
		return "", fmt.Errorf("image volume %s: sub path %q in image %s: %w", mnt.GetContainerPath(), sub, img.ID, err)
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: image volume %s: sub path %q does not exist in image %s", spec.ErrInvalid, mnt.GetContainerPath(), sub, img.ID)
		}
		return "", fmt.Errorf("image volume %s: sub path %q in image %s: %w", mnt.GetContainerPath(), sub, img.ID, err)
	}
	return path, nil
}

// recordedMounts is what ContainerStatus reports: the request's mounts,
// with each image volume naming the image it resolved to (image_ref,
// KEP-5365), so kubelet can show which image a volume really holds.
func recordedMounts(mounts []*runtimeapi.Mount, volumes map[int]*image.Image) []*runtimeapi.Mount {
	out := make([]*runtimeapi.Mount, 0, len(mounts))
	for i, m := range mounts {
		img := volumes[i]
		if m.GetImage() == nil || img == nil {
			out = append(out, m)
			continue
		}
		c := proto.Clone(m).(*runtimeapi.Mount)
		c.Image.ImageRef = img.ID
		out = append(out, c)
	}
	return out
}
