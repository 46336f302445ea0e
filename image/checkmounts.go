package image

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// driverCheckDirs are the scratch directories the overlay driver of
// go.podman.io/storage makes under its home at start-up to probe the
// kernel (drivers/overlay/check.go): it mounts an overlay there and
// unmounts it at once. A daemon killed in between leaves the mount, and
// nothing in the library ever removes it.
var driverCheckDirs = []string{"volatile-check", "metacopy-check", "opaque-bug-check", "compat"}

// cleanDriverCheckMounts unmounts and removes what an interrupted probe
// left under graphRoot/overlay. It runs before the store opens, when no
// probe of this daemon is in flight.
func cleanDriverCheckMounts(graphRoot string) {
	home := filepath.Join(graphRoot, "overlay")
	entries, err := os.ReadDir(home)
	if err != nil {
		return
	}
	var leftovers []string
	for _, e := range entries {
		for _, prefix := range driverCheckDirs {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				leftovers = append(leftovers, filepath.Join(home, e.Name()))
			}
		}
	}
	if len(leftovers) == 0 {
		return
	}
	mounts, _ := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !strings.HasPrefix(m.Mountpoint, home+"/"), false
	})
	for _, dir := range leftovers {
		for _, m := range mounts {
			if strings.HasPrefix(m.Mountpoint, dir+"/") {
				_ = unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
			}
		}
		_ = os.RemoveAll(dir)
	}
}
