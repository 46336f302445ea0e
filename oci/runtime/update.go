package runtime

import (
	"context"
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update applies new resource limits to the running container.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	dir, err := r.existing(id)
	if err != nil {
		return err
	}
	if res == nil {
		return nil
	}
	if len(res.HugepageLimits) > 0 && !hugetlbAvailable() {
		// kubelet sends a zero limit for every page size whether or not the
		// node has the controller; runc fails on them without it.
		cp := *res
		cp.HugepageLimits = nil
		res = &cp
	}
	if err := r.handlerOf(id).runc.Update(ctx, id, res); err != nil {
		return fmt.Errorf("update container %s: %w", id, exitedErr(dir, runcErr(err)))
	}
	return nil
}

func hugetlbAvailable() bool {
	if _, err := os.Stat("/sys/fs/cgroup/hugetlb"); err == nil {
		return true
	}
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	return err == nil && strings.Contains(" "+strings.TrimSpace(string(b))+" ", " hugetlb ")
}

// Pids lists the host pids of the container's processes.
func (r *Runtime) Pids(ctx context.Context, id string) ([]int, error) {
	dir, err := r.existing(id)
	if err != nil {
		return nil, err
	}
	pids, err := r.handlerOf(id).runc.Ps(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list processes of container %s: %w", id, exitedErr(dir, runcErr(err)))
	}
	return pids, nil
}
