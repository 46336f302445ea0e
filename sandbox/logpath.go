package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/crivet/crivet/oci/spec"
	"golang.org/x/sys/unix"
)

// ContainerLogPath resolves a container's CRI log_path against its pod's
// log directory and creates the directories between them. The monitor
// writes the log as root, so the path must not leave the directory: an
// absolute log_path, one whose cleaned form climbs out with "..", or one
// crossing a symlink (any existing component below the directory,
// including the file itself) is refused with spec.ErrInvalid. The
// directory itself is kubelet's and may sit below symlinks of the node.
func ContainerLogPath(dir, rel string) (string, error) {
	if filepath.IsAbs(rel) {
		return "", fmt.Errorf("log_path %q: must be relative to the pod's log directory: %w", rel, spec.ErrInvalid)
	}
	clean := filepath.Clean(rel)
	if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("log_path %q: leaves the pod's log directory %s: %w", rel, dir, spec.ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("log directory %s: %w", dir, err)
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("log directory %s: %w", dir, err)
	}
	defer unix.Close(root)
	// Component by component, each relative to the last one opened without
	// following a symlink: a directory swapped for a symlink between the
	// check and the use cannot redirect what follows.
	parts := strings.Split(clean, "/")
	cur := root
	defer func() {
		if cur != root {
			unix.Close(cur)
		}
	}()
	for i, name := range parts {
		last := i == len(parts)-1
		var st unix.Stat_t
		err := unix.Fstatat(cur, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT):
			if last {
				return filepath.Join(dir, clean), nil
			}
			if err := unix.Mkdirat(cur, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				return "", fmt.Errorf("log_path %q: mkdir %s: %w", rel, name, err)
			}
			if err := unix.Fstatat(cur, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return "", fmt.Errorf("log_path %q: %s: %w", rel, name, err)
			}
		case err != nil:
			return "", fmt.Errorf("log_path %q: %s: %w", rel, name, err)
		}
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return "", fmt.Errorf("log_path %q: %s is a symlink: %w", rel, filepath.Join(append([]string{dir}, parts[:i+1]...)...), spec.ErrInvalid)
		case last && st.Mode&unix.S_IFMT != unix.S_IFREG:
			return "", fmt.Errorf("log_path %q: not a regular file: %w", rel, spec.ErrInvalid)
		case last:
			return filepath.Join(dir, clean), nil
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return "", fmt.Errorf("log_path %q: %s is not a directory: %w", rel, name, spec.ErrInvalid)
		}
		next, err := unix.Openat(cur, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("log_path %q: %s: %w", rel, name, err)
		}
		if cur != root {
			unix.Close(cur)
		}
		cur = next
	}
	return filepath.Join(dir, clean), nil
}
