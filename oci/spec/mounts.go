package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// baseMounts are the kernel filesystems every container gets, as in
// containerd's CRI plugin (its default spec without /run, plus the cgroup
// mount). A privileged container gets /sys and /sys/fs/cgroup writable
// (CRI: "Any sysfs and procfs mounts are mounted RW").
func baseMounts(privileged bool) []specs.Mount {
	sysMode := "ro"
	if privileged {
		sysMode = "rw"
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", sysMode}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", sysMode}},
	}
}

// bindMount is a CRI mount or a sandbox file, before it becomes an OCI mount.
type bindMount struct {
	src, dst string
	opts     []string
	// uids, gids make the bind mount id-mapped (runc ≥ 1.2, Linux 5.12;
	// tmpfs and overlay sources need 6.3).
	uids, gids []specs.LinuxIDMapping
}

// buildMounts merges the base mounts, the sandbox files and the CRI mounts.
// A CRI mount wins over a sandbox file or base mount at the same
// destination, and a CRI mount at /dev replaces every base mount below it
// (containerd's rules). Bind mounts are ordered by depth so that a mount
// never hides one nested below it. It returns the mounts and the rootfs
// propagation that the CRI propagation modes need.
//
// In a pod with a user namespace (userns not nil), the pod's files are
// id-mapped with the pod's mappings: crivet writes them as the host's
// root, and they must appear owned by the pod's root, writable as they
// are to a container in the node's user namespace.
func buildMounts(cfg *runtimeapi.ContainerConfig, files SandboxFiles, privileged, readonlyRoot bool, userns *IDMappings) ([]specs.Mount, string, error) {
	var binds []bindMount
	taken := map[string]bool{}
	rootProp := ""
	for _, m := range cfg.GetMounts() {
		b, prop, err := criMount(m, userns != nil)
		if err != nil {
			return nil, "", err
		}
		switch {
		case prop == "rshared":
			rootProp = "rshared"
		case prop == "rslave" && rootProp == "":
			rootProp = "rslave"
		}
		taken[b.dst] = true
		binds = append(binds, b)
	}

	fileOpt := "rw"
	if readonlyRoot {
		fileOpt = "ro"
	}
	for _, f := range []struct {
		src, dst string
		opts     []string
	}{
		{files.Hostname, "/etc/hostname", []string{"rbind", "rprivate", fileOpt}},
		{files.Hosts, "/etc/hosts", []string{"rbind", "rprivate", fileOpt}},
		{files.ResolvConf, "/etc/resolv.conf", []string{"rbind", "rprivate", fileOpt}},
		// The pod's shared memory stays writable on a read-only rootfs, as
		// the private /dev/shm tmpfs would be.
		{files.Shm, "/dev/shm", []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"}},
	} {
		if f.src == "" || taken[f.dst] || (taken["/dev"] && f.dst == "/dev/shm") {
			continue
		}
		taken[f.dst] = true
		b := bindMount{src: f.src, dst: f.dst, opts: f.opts}
		if userns != nil {
			b.uids, b.gids = userns.UIDs, userns.GIDs
		}
		binds = append(binds, b)
	}

	var out []specs.Mount
	for _, m := range baseMounts(privileged) {
		if taken[m.Destination] || (taken["/dev"] && strings.HasPrefix(m.Destination, "/dev/")) {
			continue
		}
		out = append(out, m)
	}
	slices.SortStableFunc(binds, func(a, b bindMount) int { return depth(a.dst) - depth(b.dst) })
	for _, b := range binds {
		out = append(out, specs.Mount{Destination: b.dst, Type: "bind", Source: b.src, Options: b.opts, UIDMappings: b.uids, GIDMappings: b.gids})
	}
	return out, rootProp, nil
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }

// criMount turns one CRI mount into a bind mount. A missing host path is
// created as a directory (docker's and containerd's behaviour, which
// Kubernetes hostPath volumes of type "" rely on), and symlinks in it are
// resolved on the host so that runc binds what the user named.
//
// A mount with ID mappings (kubelet sets them on the volumes of a pod with
// a user namespace) becomes an id-mapped bind mount: files owned by host
// ID h appear owned by the container ID that h is mapped to. It needs the
// pod's user namespace (inUserns) and both mappings.
func criMount(m *runtimeapi.Mount, inUserns bool) (bindMount, string, error) {
	dst, src := m.GetContainerPath(), m.GetHostPath()
	if !filepath.IsAbs(dst) {
		return bindMount{}, "", fmt.Errorf("%w: mount container path %q is not absolute", ErrInvalid, dst)
	}
	if m.GetImage().GetImage() != "" {
		return bindMount{}, "", fmt.Errorf("%w: image volume mounts (%s)", ErrUnsupported, dst)
	}
	var uids, gids []specs.LinuxIDMapping
	if len(m.GetUidMappings()) > 0 || len(m.GetGidMappings()) > 0 {
		switch {
		case !inUserns:
			return bindMount{}, "", fmt.Errorf("%w: id-mapped mount %s in a pod without a user namespace", ErrInvalid, dst)
		case len(m.GetUidMappings()) == 0 || len(m.GetGidMappings()) == 0:
			return bindMount{}, "", fmt.Errorf("%w: id-mapped mount %s needs both UID and GID mappings", ErrInvalid, dst)
		}
		uids, gids = criIDMappings(m.GetUidMappings()), criIDMappings(m.GetGidMappings())
		for _, ms := range [][]specs.LinuxIDMapping{uids, gids} {
			for _, x := range ms {
				if x.Size == 0 || uint64(x.HostID)+uint64(x.Size) > math.MaxUint32 || uint64(x.ContainerID)+uint64(x.Size) > math.MaxUint32 {
					return bindMount{}, "", fmt.Errorf("%w: id-mapped mount %s: mapping %d:%d:%d", ErrInvalid, dst, x.ContainerID, x.HostID, x.Size)
				}
			}
		}
	}
	if !filepath.IsAbs(src) {
		return bindMount{}, "", fmt.Errorf("%w: mount host path %q is not absolute", ErrInvalid, src)
	}
	var prop string
	var need []string // propagation the host mount must have
	switch m.GetPropagation() {
	case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		prop = "rprivate"
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		prop, need = "rslave", []string{"shared:", "master:"}
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		prop, need = "rshared", []string{"shared:"}
	default:
		return bindMount{}, "", fmt.Errorf("%w: mount propagation %d for %s", ErrInvalid, m.GetPropagation(), dst)
	}

	opts := []string{"rbind", prop}
	switch {
	case m.GetRecursiveReadOnly() && !m.GetReadonly():
		return bindMount{}, "", fmt.Errorf("%w: recursive read-only mount %s must also be read-only", ErrInvalid, dst)
	case m.GetRecursiveReadOnly() && prop != "rprivate":
		// A read-only attribute set recursively would not apply to mounts
		// that propagate in later; CRI requires private propagation.
		return bindMount{}, "", fmt.Errorf("%w: recursive read-only mount %s needs private propagation, got %s", ErrInvalid, dst, m.GetPropagation())
	case m.GetRecursiveReadOnly():
		opts = append(opts, "rro")
	case m.GetReadonly():
		opts = append(opts, "ro")
	default:
		opts = append(opts, "rw")
	}
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(src, 0o755); err != nil {
			return bindMount{}, "", fmt.Errorf("create mount host path: %w", err)
		}
	} else if err != nil {
		return bindMount{}, "", fmt.Errorf("mount host path: %w", err)
	}
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return bindMount{}, "", fmt.Errorf("mount host path: %w", err)
	}

	if need != nil {
		if err := checkPropagation(src, need...); err != nil {
			return bindMount{}, "", err
		}
	}
	// selinux_relabel is ignored: crivet runs without SELinux labels.
	return bindMount{src: src, dst: filepath.Clean(dst), opts: opts, uids: uids, gids: gids}, prop, nil
}

// checkPropagation makes sure the host mount holding path has one of the
// given propagation tags. Without it, asking runc for rslave/rshared binds
// succeeds but nothing propagates, which is worse than a clear error.
func checkPropagation(path string, tags ...string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(path))
	if err != nil {
		return fmt.Errorf("mount propagation of %s: %w", path, err)
	}
	var best *mountinfo.Info
	for _, m := range mounts {
		// The last of several mounts at one point is the visible one.
		if best == nil || len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return fmt.Errorf("mount propagation of %s: no mount found", path)
	}
	for _, opt := range strings.Fields(best.Optional) {
		for _, t := range tags {
			if strings.HasPrefix(opt, t) {
				return nil
			}
		}
	}
	want := "shared"
	if len(tags) > 1 {
		want = "shared or slave"
	}
	return fmt.Errorf("%w: path %q is mounted on %q but it is not a %s mount", ErrInvalid, path, best.Mountpoint, want)
}
