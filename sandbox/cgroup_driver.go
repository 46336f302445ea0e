package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrCgroupDriverChanged: the configured cgroup driver is not the one the
// node's pods were created with.
var ErrCgroupDriverChanged = errors.New("cgroup driver changed")

// cgroupDriverFile records the cgroup driver of the pods under Root. A pod
// lives in cgroups its driver made (directories, or systemd units); under
// the other driver its containers' stats, OOM kills and removal would look
// in the wrong place, so the driver may only change while no pod exists.
const cgroupDriverFile = "cgroup-driver"

// legacyCgroupDriver: records older than the driver file were all made by
// a crivet that knew only cgroupfs.
const legacyCgroupDriver = "cgroupfs"

// checkCgroupDriver refuses a driver other than the recorded one while any
// pod or container record exists, and records the driver otherwise.
func (m *Manager) checkCgroupDriver(driver string) error {
	if driver == "" {
		return nil
	}
	path := filepath.Join(m.cfg.Root, cgroupDriverFile)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cgroup driver record: %w", err)
	}
	recorded := strings.TrimSpace(string(b))
	n := len(m.pods) + len(m.containers)
	if recorded == "" && n > 0 {
		recorded = legacyCgroupDriver
	}
	if recorded == driver {
		if len(b) == 0 {
			return writeFileAtomic(path, []byte(driver+"\n"), 0o600)
		}
		return nil
	}
	if n > 0 {
		return fmt.Errorf("%w: cgroup_manager is %q, but the %d pods (%d containers) recorded in %s run under the %q driver; "+
			"to switch, drain the node (kubectl drain <node>; crictl rmp -fa) with cgroup_manager = %q, then restart crivet with %q "+
			"and kubelet with the matching cgroupDriver",
			ErrCgroupDriverChanged, driver, len(m.pods), len(m.containers), m.cfg.Root, recorded, recorded, driver)
	}
	m.log.Info("cgroup driver recorded", "driver", driver, "previous", recorded)
	return writeFileAtomic(path, []byte(driver+"\n"), 0o600)
}
