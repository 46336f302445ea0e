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
