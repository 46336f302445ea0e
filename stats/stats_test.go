package stats

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A real cgroup with a real process in it: the reader sees the process,
// its memory, its threads and descriptors, on whichever hierarchy the host has.
func TestReadCgroupOfARealProcess(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	path := fmt.Sprintf("/crivet-stats-test-%d", os.Getpid())
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	limit := int64(64)
	memLimit := int64(256 << 20)
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", path, &cgroup2.Resources{Pids: &cgroup2.Pids{Max: limit}, Memory: &cgroup2.Memory{Max: &memLimit}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Delete() })
		if err := m.AddProc(uint64(cmd.Process.Pid)); err != nil {
			t.Fatal(err)
		}
	} else {
		cg, err := cgroup1.New(cgroup1.StaticPath(path), &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}, Memory: &specs.LinuxMemory{Limit: &memLimit}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			_ = cg.Delete()
		})
		if err := cg.Add(cgroup1.Process{Pid: cmd.Process.Pid}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := ReadCgroup(path, Options{Processes: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pids != 1 || c.PidsLimit != uint64(limit) {
		t.Errorf("pids %d limit %d, want 1 and %d", c.Pids, c.PidsLimit, limit)
	}
	if c.Threads != 1 || c.FDs < 3 {
		t.Errorf("threads %d fds %d: want sleep's 1 thread and its stdio", c.Threads, c.FDs)
	}
	if c.Memory.WorkingSet > c.Memory.Usage {
		t.Errorf("working set %d above usage %d", c.Memory.WorkingSet, c.Memory.Usage)
	}
	// Available memory is the limit minus the working set (cAdvisor's
	// rule, which kubelet's Summary API and eviction read).
	if c.Memory.Limit != uint64(memLimit) {
		t.Errorf("memory limit %d, want %d", c.Memory.Limit, memLimit)
	}
	if avail, ok := c.Memory.AvailableBytes(); !ok || avail != uint64(memLimit)-c.Memory.WorkingSet {
		t.Errorf("available %d (%v), want %d - %d", avail, ok, memLimit, c.Memory.WorkingSet)
	}
	// Without Processes, /proc is not walked.
	if c, err := ReadCgroup(path, Options{}); err != nil || c.FDs != 0 || c.Threads != 0 {
		t.Errorf("process counts without asking: %+v %v", c, err)
	}
}

func TestReadCgroupWithoutACgroup(t *testing.T) {
	for _, p := range []string{"", "/crivet-no-such-cgroup-" + filepath.Base(t.TempDir())} {
		if _, err := ReadCgroup(p, Options{}); !errors.Is(err, ErrNoCgroup) {
			t.Errorf("%q: %v, want ErrNoCgroup", p, err)
		}
	}
}

func TestNetNSInterfacesMatchTheKernelsCounters(t *testing.T) {
	got := NetNSInterfaces("/proc/self/ns/net")
	data, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	want := parseNetDev(string(data))
	if len(got) != len(want) {
		t.Fatalf("interfaces %v, want %v", got, want)
	}
	for i := range got {
		if got[i].Name != want[i].Name || got[i].Name == "lo" {
			t.Fatalf("interface %d: %q, want %q (lo excluded)", i, got[i].Name, want[i].Name)
		}
	}
}

func TestParseNetDev(t *testing.T) {
	const dev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    2000      20    1    2    0     0          0         0     3000      30    3    4    0     0       0          0
  bad: 1 2
`
	got := parseNetDev(dev)
	want := []Interface{{Name: "eth0", RxBytes: 2000, RxPackets: 20, RxErrors: 1, RxDropped: 2, TxBytes: 3000, TxPackets: 30, TxErrors: 3, TxDropped: 4}}
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("parsed %+v, want %+v", got, want)
	}
}

// io.stat's lines become the Read and Write entries metrics map to
// container_fs_{reads,writes}{,_bytes}_total, per device, as on v1.
// (The real file is read in the cgroup-v2 guest: test/cgroupv2.)
func TestIOFromV2(t *testing.T) {
	usage := []*v2stats.IOEntry{
		{Major: 254, Minor: 0, Rbytes: 4096, Wbytes: 8 << 20, Rios: 1, Wios: 64},
		{Major: 7, Minor: 1},
	}
	names := map[[2]uint64]string{{254, 0}: "/dev/vda"}
	bytes, ops := ioFromV2(usage, func(ma, mi uint64) string { return names[[2]uint64{ma, mi}] })
	want := []IO{
		{Device: "/dev/vda", Major: 254, Op: "Read", Value: 4096}, {Device: "/dev/vda", Major: 254, Op: "Write", Value: 8 << 20},
		{Major: 7, Minor: 1, Op: "Read"}, {Major: 7, Minor: 1, Op: "Write"},
	}
	wantOps := []IO{
		{Device: "/dev/vda", Major: 254, Op: "Read", Value: 1}, {Device: "/dev/vda", Major: 254, Op: "Write", Value: 64},
		{Major: 7, Minor: 1, Op: "Read"}, {Major: 7, Minor: 1, Op: "Write"},
	}
	if fmt.Sprint(bytes) != fmt.Sprint(want) || fmt.Sprint(ops) != fmt.Sprint(wantOps) {
		t.Errorf("bytes %v ops %v\nwant %v %v", bytes, ops, want, wantOps)
	}
}

// A device sysfs knows gets its /dev name; an unknown one none.
func TestBlockDevName(t *testing.T) {
	ents, _ := os.ReadDir("/sys/dev/block")
	if len(ents) == 0 {
		t.Skip("no block devices in sysfs")
	}
	var ma, mi uint64
	if _, err := fmt.Sscanf(ents[0].Name(), "%d:%d", &ma, &mi); err != nil {
		t.Fatal(err)
	}
	target, _ := os.Readlink(filepath.Join("/sys/dev/block", ents[0].Name()))
	if got := blockDevName(ma, mi); got != "/dev/"+filepath.Base(target) {
		t.Errorf("%s: %q, want /dev/%s", ents[0].Name(), got, filepath.Base(target))
	}
	if got := blockDevName(4095, 1048575); got != "" {
		t.Errorf("unknown device named %q", got)
	}
}

// A cgroup without a memory limit has no available-memory figure: the
// kernel's "no limit" values (v2 max, v1's page-aligned int64 max) are
// not limits.
func TestAvailableBytesWithoutALimit(t *testing.T) {
	for _, raw := range []uint64{0, ^uint64(0), 9223372036854771712} {
		m := Memory{Limit: limitOrUnlimited(raw), WorkingSet: 10 << 20}
		if avail, ok := m.AvailableBytes(); ok {
			t.Errorf("limit %d read as a limit: available %d", raw, avail)
		}
	}
	m := Memory{Limit: limitOrUnlimited(64 << 20), WorkingSet: 80 << 20}
	if avail, ok := m.AvailableBytes(); !ok || avail != 0 {
		t.Errorf("working set above the limit: available %d (%v), want 0", avail, ok)
	}
}
