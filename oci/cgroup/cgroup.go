// Package cgroup says where crivet's containers and pods live in the
// cgroup tree under either cgroup driver, and which driver a node uses.
// It is the one place that turns a pod's cgroup parent into runc's
// linux.cgroupsPath and a cgroupsPath into the directory the kernel shows:
// stats, the monitor's OOM count and the spec all use these functions, so
// they cannot disagree about a path.
//
// The driver must match kubelet's cgroupDriver: with cgroupfs kubelet
// makes pod cgroups as directories ("/kubepods/burstable/pod<uid>") and
// runc makes the container's directory beneath; with systemd kubelet makes
// slice units ("kubepods-burstable-pod<uid>.slice") and runc asks systemd,
// over D-Bus, for a scope unit per container inside that slice.
package cgroup

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/cgroups/v3"
	ocgroups "github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/systemd"
)

// Driver is a cgroup manager: Cgroupfs or Systemd. The zero Driver is
// Cgroupfs, what crivet used before it had a choice.
type Driver string

const (
	Cgroupfs Driver = "cgroupfs"
	Systemd  Driver = "systemd"
)

// Parents of pods that name none (critest's; kubelet always names one),
// one per driver so that crivet's containers stay together either way.
const (
	DefaultParent       = "/crivet"
	DefaultSystemdSlice = "crivet.slice"
)

// ScopePrefix names the systemd scope of a container: crivet-<id>.scope,
// the same name its cgroupfs directory has.
const ScopePrefix = "crivet"

// Default is the driver kubeadm expects on this host: systemd when systemd
// is PID 1 (sd_booted's test, /run/systemd/system), else cgroupfs.
func Default() Driver {
	if systemd.IsRunningSystemd() {
		return Systemd
	}
	return Cgroupfs
}

// ParseDriver reads a configured driver; "" is Default().
func ParseDriver(s string) (Driver, error) {
	switch Driver(s) {
	case "":
		return Default(), nil
	case Cgroupfs, Systemd:
		return Driver(s), nil
	}
	return "", fmt.Errorf("cgroup driver %q: want %q or %q", s, Systemd, Cgroupfs)
}

func (d Driver) String() string {
	if d == "" {
		return string(Cgroupfs)
	}
	return string(d)
}

// ContainerPath is runc's linux.cgroupsPath for container id of a pod with
// cgroup parent parent ("" = the driver's default). It refuses a parent
// written for the other driver: that means kubelet's cgroupDriver differs
// from crivet's, and the container would land outside the pod's cgroup.
func (d Driver) ContainerPath(parent, id string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("cgroup path: empty container ID")
	}
	if d == Systemd {
		if parent == "" {
			parent = DefaultSystemdSlice
		}
		parent, err := sliceName(parent)
		if err != nil {
			return "", err
		}
		// runc's systemd form: <slice>:<scope prefix>:<name>.
		return parent + ":" + ScopePrefix + ":" + id, nil
	}
	if parent == "" {
		parent = DefaultParent
	}
	if err := checkDir(parent); err != nil {
		return "", err
	}
	return path.Join("/", parent, ScopePrefix+"-"+id), nil
}

// Dir is the directory of the cgroup runc makes for cgroupsPath, relative
// to the root of every hierarchy: the same below each v1 controller's
// mount and below the v2 mount. This is runc's own rule: with cgroupfs an
// absolute cgroupsPath is taken from the hierarchy's root; with systemd
// the scope <prefix>-<name>.scope sits in the expanded slice
// (a-b.slice → /a.slice/a-b.slice), and an empty slice is system.slice.
func (d Driver) Dir(cgroupsPath string) (string, error) {
	if d != Systemd {
		if !path.IsAbs(cgroupsPath) {
			// runc would put it below its own cgroup, which this process
			// cannot know for another one's runc.
			return "", fmt.Errorf("cgroup path %q is not absolute", cgroupsPath)
		}
		return path.Clean(cgroupsPath), nil
	}
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 {
		return "", fmt.Errorf("cgroup path %q: want slice:prefix:name with the systemd driver", cgroupsPath)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice"
	}
	dir, err := systemd.ExpandSlice(slice)
	if err != nil {
		return "", fmt.Errorf("cgroup path %q: %w", cgroupsPath, err)
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		unit = prefix + "-" + name + ".scope"
	}
	return path.Join(dir, unit), nil
}

// PodDir is the directory of a pod's own cgroup, the one kubelet made and
// named as cgroup_parent; "" when the pod names none (the default parent
// is shared by every such pod, so it is no pod's cgroup).
func (d Driver) PodDir(parent string) (string, error) {
	if parent == "" {
		return "", nil
	}
	if d == Systemd {
		name, err := sliceName(parent)
		if err != nil {
			return "", err
		}
		return systemd.ExpandSlice(name)
	}
	if err := checkDir(parent); err != nil {
		return "", err
	}
	return path.Join("/", parent), nil
}

// sliceName is the slice unit a systemd parent names. kubelet's systemd
// driver sends the slice's expanded path
// ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
// under cgroupRoot /kubelet "/kubelet.slice/kubelet-kubepods.slice/…"),
// critest the bare unit name: both name the last element, and a path is
// accepted only when it is that unit's own expansion.
func sliceName(parent string) (string, error) {
	name := parent
	if strings.Contains(parent, "/") {
		name = path.Base(parent)
		if strings.HasSuffix(name, ".slice") && !isSlicePath(parent) {
			return "", fmt.Errorf("cgroup parent %q is not the path of slice %s", parent, name)
		}
	}
	return name, checkSlice(name, parent)
}

// checkSlice refuses a cgroupfs parent given to the systemd driver.
func checkSlice(name, parent string) error {
	if strings.Contains(name, "/") || !strings.HasSuffix(name, ".slice") {
		return fmt.Errorf("cgroup parent %q is a cgroupfs path, but crivet's cgroup_manager is %q: set kubelet's cgroupDriver to systemd or crivet's cgroup_manager to cgroupfs", parent, Systemd)
	}
	if _, err := systemd.ExpandSlice(name); err != nil {
		return fmt.Errorf("cgroup parent: %w", err)
	}
	return nil
}

// checkDir refuses a systemd slice given to the cgroupfs driver: runc
// would make a directory named like the slice beside kubelet's real one.
func checkDir(parent string) error {
	if strings.HasSuffix(parent, ".slice") && (!strings.Contains(parent, "/") || isSlicePath(parent)) {
		return fmt.Errorf("cgroup parent %q is a systemd slice, but crivet's cgroup_manager is %q: set kubelet's cgroupDriver to cgroupfs or crivet's cgroup_manager to systemd", parent, Cgroupfs)
	}
	return nil
}

// isSlicePath tells an expanded slice path, as kubelet's systemd driver
// sends it, from a cgroupfs directory that merely ends in ".slice".
func isSlicePath(parent string) bool {
	dir, err := systemd.ExpandSlice(path.Base(parent))
	return err == nil && dir == path.Clean(parent)
}

// Root is where the cgroup hierarchies are mounted.
const Root = "/sys/fs/cgroup"

// ControllerDir is the absolute directory of cgroup dir (as Dir returns)
// for one controller ("memory", "pids", …): the unified hierarchy on a v2
// host, else the v1 hierarchy holding that controller, which is also where
// a hybrid host keeps every controller. "" when the controller is not
// mounted.
func ControllerDir(dir, controller string) string {
	return controllerDir(dir, controller, cgroups.Mode() == cgroups.Unified, v1Mountpoint)
}

func controllerDir(dir, controller string, unified bool, v1Mount func(string) (string, error)) string {
	if unified {
		return filepath.Join(Root, dir)
	}
	mnt, err := v1Mount(controller)
	if err != nil {
		return ""
	}
	return filepath.Join(mnt, dir)
}

// v1Mountpoint is runc's own lookup of a v1 controller's mount, so the
// directory is the one runc made.
func v1Mountpoint(controller string) (string, error) {
	return ocgroups.FindCgroupMountpoint("", controller)
}
