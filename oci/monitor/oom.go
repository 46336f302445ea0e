package monitor

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const cgroupRoot = "/sys/fs/cgroup"

// memoryCgroup finds the memory cgroup directory of pid: the v1 memory
// hierarchy when there is one (hybrid hosts keep memory there), else the
// unified hierarchy. The monitor lives in the host cgroup namespace, so the
// paths in /proc/<pid>/cgroup are host paths.
func memoryCgroup(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	var unified string
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" && parts[0] == "0" {
			unified = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				return filepath.Join(cgroupRoot, "memory", parts[2])
			}
		}
	}
	if unified != "" {
		if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
			return filepath.Join(cgroupRoot, unified)
		}
	}
	return ""
}

// oomKills reads how many processes the kernel's OOM killer has killed in
// the cgroup ("oom_kill" in v1 memory.oom_control, since Linux 4.13, and in
// v2 memory.events).
func oomKills(dir string) (int64, error) {
	if dir == "" {
		return 0, errors.New("no memory cgroup")
	}
	b, err := os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if errors.Is(err, os.ErrNotExist) {
		b, err = os.ReadFile(filepath.Join(dir, "memory.events"))
	}
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no oom_kill counter")
}
