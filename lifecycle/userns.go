package lifecycle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
)

// podIDMapping is the ID mapping of the pod's own user namespace, for its
// containers' root filesystems; nil when the pod uses the node's.
func podIDMapping(pod *sandbox.Pod) (*image.IDMapping, error) {
	um, err := spec.PodUserns(pod.Config.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil {
		return nil, err
	}
	switch {
	case um == nil && pod.UserNS == "":
		return nil, nil
	case um == nil || pod.UserNS == "":
		return nil, fmt.Errorf("%w: pod %s: its config and its pinned user namespace disagree", spec.ErrInvalid, pod.ID)
	}
	return &image.IDMapping{UIDs: um.UIDs, GIDs: um.GIDs}, nil
}

// createRootfs makes the container's root filesystem, id-mapped in a pod
// with a user namespace. A store that cannot id-map layers is refused
// rather than left to copy and chown the image for every pod.
func (m *Manager) createRootfs(id string, img *image.Image, pod *sandbox.Pod) (string, error) {
	idmap, err := podIDMapping(pod)
	if err != nil {
		return "", err
	}
	if idmap != nil {
		if err := reachableRunRoot(m.cfg.RunRoot); err != nil {
			return "", err
		}
	}
	path, err := m.images.CreateRootfs(id, img, idmap)
	if errors.Is(err, image.ErrNoIDMappedLayers) {
		return "", fmt.Errorf("%w: pod user namespace: %w", spec.ErrUnsupported, err)
	}
	return path, err
}

// userNamespace is the spec's view of the pod's user namespace.
func userNamespace(pod *sandbox.Pod) spec.Namespace {
	if pod.UserNS == "" {
		return spec.Namespace{Host: true}
	}
	return spec.Namespace{Path: pod.UserNS}
}

// userInfraRootfs readies the empty root filesystem of the infra process
// of a pod with a user namespace: runc, as the pod's root, must reach it
// and make the mount points (/proc, /dev, ...) in it.
func userInfraRootfs(runRoot, bundle, rootfs string, pod *sandbox.Pod) error {
	um, err := spec.PodUserns(pod.Config.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil {
		return err
	}
	if um == nil {
		return fmt.Errorf("%w: pod %s: a pinned user namespace but no mapping in its config", spec.ErrInvalid, pod.ID)
	}
	if err := reachableRunRoot(runRoot); err != nil {
		return err
	}
	if err := searchable(runRoot, filepath.Dir(bundle), bundle); err != nil {
		return err
	}
	return os.Chown(rootfs, int(um.RootUID()), int(um.RootGID()))
}

// reachableRunRoot refuses, with a message that says what to change, a
// run root below a directory that others cannot search: crivet opens the
// run root itself (0711) but never changes the modes of directories it
// does not own, and runc would fail with a bare "permission denied".
func reachableRunRoot(runRoot string) error {
	for d := filepath.Dir(runRoot); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%w: pod user namespace: %s (above the run root %s) has mode %#o: the pod's root, a host ID without rights, cannot reach the root filesystems below it (give others search permission, o+x)",
				spec.ErrUnsupported, d, runRoot, st.Mode().Perm())
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}

// searchable adds search permission for group and others to each
// directory: runc sets up a root filesystem from inside the container's
// user namespace, where the host's root is nobody, so the infra process's
// root (in its bundle) must be reachable by others. Nothing becomes
// listable or readable, and each file keeps its own mode (config.json is
// 0600).
func searchable(dirs ...string) error {
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
	}
	return nil
}
