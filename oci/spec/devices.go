package spec

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// configDevices turns CRI devices into device nodes plus the cgroup rules
// that allow them. A host path that is a directory brings every device
// below it (containerd's behaviour), under the container path.
func configDevices(devs []*runtimeapi.Device) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	var nodes []specs.LinuxDevice
	var rules []specs.LinuxDeviceCgroup
	for _, d := range devs {
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return nil, nil, fmt.Errorf("%w: device %s permissions %q (want a combination of r, w, m)", ErrInvalid, d.GetHostPath(), perms)
		}
		if !filepath.IsAbs(d.GetContainerPath()) {
			return nil, nil, fmt.Errorf("%w: device container path %q is not absolute", ErrInvalid, d.GetContainerPath())
		}
		src, err := filepath.EvalSymlinks(d.GetHostPath())
		if err != nil {
			return nil, nil, fmt.Errorf("device %s: %w", d.GetHostPath(), err)
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, nil, fmt.Errorf("device %s: %w", d.GetHostPath(), err)
		}
		var found []specs.LinuxDevice
		if st.IsDir() {
			found, err = devicesUnder(src, d.GetContainerPath(), false)
		} else {
			var dev specs.LinuxDevice
			dev, err = deviceAt(src, d.GetContainerPath())
			found = []specs.LinuxDevice{dev}
		}
		if err != nil {
			return nil, nil, err
		}
		for _, dev := range found {
			nodes = append(nodes, dev)
			rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: dev.Type, Major: &dev.Major, Minor: &dev.Minor, Access: perms})
		}
	}
	return nodes, rules, nil
}

// deviceAt describes the host device node at src for creation at dst,
// with the host node's type, numbers, mode and owner.
func deviceAt(src, dst string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return specs.LinuxDevice{}, fmt.Errorf("device %s: %w", src, err)
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, fmt.Errorf("%w: %s is not a device node", ErrInvalid, src)
	}
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path:     dst,
		Type:     typ,
		Major:    int64(unix.Major(st.Rdev)),
		Minor:    int64(unix.Minor(st.Rdev)),
		FileMode: &mode,
		UID:      &uid,
		GID:      &gid,
	}, nil
}

// hostDevices lists the host's /dev for a privileged container (CRI:
// "All devices from the host's /dev are available within the container").
func hostDevices() ([]specs.LinuxDevice, error) {
	return devicesUnder("/dev", "/dev", true)
}

// devicesUnder walks dir for char and block devices, mapping them below
// dst. For the host's /dev it leaves out what the container gets its own
// instance of (devpts, shm, mqueue, the console) and runtime-private dot
// directories.
func devicesUnder(dir, dst string, hostDev bool) ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // a node that vanished or cannot be read is skipped
		}
		if e.IsDir() {
			if hostDev && p != dir {
				switch name := e.Name(); {
				case name == "pts", name == "shm", name == "mqueue", name == "fd", strings.HasPrefix(name, "."):
					return filepath.SkipDir
				}
			}
			return nil
		}
		if e.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 {
			return nil
		}
		if hostDev && p == "/dev/console" {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		dev, err := deviceAt(p, filepath.Join(dst, rel))
		if err != nil {
			return nil
		}
		out = append(out, dev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list devices under %s: %w", dir, err)
	}
	return out, nil
}
