// Package stats reads what the kernel counts for crivet's containers and
// pods: one cgroup (v1 or v2, through containerd/cgroups), the processes in
// it, and the interfaces of a pod's network namespace. It returns plain
// numbers in one struct; CRI stats and CRI metrics only map them.
package stats

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/crivet/crivet/oci/cgroup"
)

// ErrNoCgroup: the path is empty or the cgroup does not exist.
var ErrNoCgroup = errors.New("no cgroup")

// Cgroup is one cgroup's counters. Times are nanoseconds, sizes bytes.
type Cgroup struct {
	CPU    CPU
	Memory Memory
	// OOMKills is the number of processes the kernel OOM-killed in it.
	OOMKills uint64
	// Pids is the number of tasks; PidsLimit 0 is unlimited.
	Pids, PidsLimit uint64
	// IOBytes and IOOps are per device and operation ("Read", "Write", …).
	IOBytes, IOOps []IO
	// Processes: open descriptors, sockets among them, and threads of the
	// cgroup's processes (filled only when asked for: it walks /proc).
	FDs, Sockets, Threads uint64
}

// CPU is the cgroup's CPU accounting.
type CPU struct {
	Usage, User, System                  uint64
	Periods, ThrottledPeriods, Throttled uint64
}

// Memory is the cgroup's memory accounting.
type Memory struct {
	Usage, MaxUsage, Failcnt uint64
	// Limit is the cgroup's memory limit; Unlimited when it has none.
	Limit uint64
	// WorkingSet is kubelet's: usage minus inactive file cache.
	WorkingSet              uint64
	RSS, Cache, MappedFile  uint64
	Kernel, Swap            uint64
	PageFaults, MajorFaults uint64
}

// IO is one blkio counter.
type IO struct {
	Device       string
	Major, Minor uint64
	Op           string
	Value        uint64
}

// Options choose the costlier parts of a read.
type Options struct {
	// Processes walks /proc for descriptors, sockets and threads.
	Processes bool
}

// ReadCgroup reads the cgroup at path, relative to each hierarchy's root
// as package cgroup's Dir and PodDir name it (under either driver).
func ReadCgroup(path string, o Options) (*Cgroup, error) {
	if path == "" {
		return nil, ErrNoCgroup
	}
	var (
		c         *Cgroup
		procsFile string
		err       error
	)
	if cgroups.Mode() == cgroups.Unified {
		c, err = readV2(path)
	} else {
		c, err = readV1(path)
	}
	procsFile = filepath.Join(cgroup.ControllerDir(path, "pids"), "cgroup.procs")
	if err != nil {
		return nil, err
	}
	if o.Processes {
		c.FDs, c.Sockets, c.Threads = processCounts(procsFile)
	}
	return c, nil
}

func readV2(path string) (*Cgroup, error) {
	// cgroup2.Load checks nothing: a cgroup that is gone would read as
	// zeros (seen in the cgroup-v2 guest).
	if _, err := os.Stat(filepath.Join(cgroup.Root, path)); err != nil {
		return nil, errors.Join(ErrNoCgroup, err)
	}
	m, err := cgroup2.Load(path)
	if err != nil {
		return nil, errors.Join(ErrNoCgroup, err)
	}
	st, err := m.Stat()
	if err != nil {
		return nil, err
	}
	c := &Cgroup{}
	if cpu := st.CPU; cpu != nil {
		c.CPU = CPU{Usage: cpu.UsageUsec * 1000, User: cpu.UserUsec * 1000, System: cpu.SystemUsec * 1000,
			Periods: cpu.NrPeriods, ThrottledPeriods: cpu.NrThrottled, Throttled: cpu.ThrottledUsec * 1000}
	}
	if mem := st.Memory; mem != nil {
		c.Memory = Memory{Usage: mem.Usage, MaxUsage: mem.MaxUsage, Limit: limitOrUnlimited(mem.UsageLimit), WorkingSet: sub(mem.Usage, mem.InactiveFile),
			RSS: mem.Anon, Cache: mem.File, MappedFile: mem.FileMapped, Kernel: mem.KernelStack + mem.Slab,
			Swap: mem.SwapUsage, PageFaults: mem.Pgfault, MajorFaults: mem.Pgmajfault}
	}
	if ev := st.MemoryEvents; ev != nil {
		c.OOMKills = ev.OomKill
		// v2 has no failcnt; "max" counts the times usage hit memory.max,
		// which is what v1's failcnt counts.
		c.Memory.Failcnt = ev.Max
	}
	if p := st.Pids; p != nil {
		c.Pids, c.PidsLimit = p.Current, p.Limit
	}
	if io := st.Io; io != nil {
		c.IOBytes, c.IOOps = ioFromV2(io.Usage, blockDevName)
	}
	return c, nil
}

// ioFromV2 maps io.stat's per-device lines to v1's blkio shape, the one
// metrics use: bytes and operations with the ops "Read" and "Write".
// io.stat counts no "Total" (nor v1's "Sync"/"Async"); devices come in
// the kernel's order.
func ioFromV2(usage []*v2stats.IOEntry, name func(major, minor uint64) string) (bytes, ops []IO) {
	for _, e := range usage {
		dev := name(e.Major, e.Minor)
		bytes = append(bytes,
			IO{Device: dev, Major: e.Major, Minor: e.Minor, Op: "Read", Value: e.Rbytes},
			IO{Device: dev, Major: e.Major, Minor: e.Minor, Op: "Write", Value: e.Wbytes})
		ops = append(ops,
			IO{Device: dev, Major: e.Major, Minor: e.Minor, Op: "Read", Value: e.Rios},
			IO{Device: dev, Major: e.Major, Minor: e.Minor, Op: "Write", Value: e.Wios})
	}
	return bytes, ops
}

// blockDevName is the /dev path of a block device ("/dev/vda"), as v1's
// blkio entries name it; "" when sysfs does not know the device.
func blockDevName(major, minor uint64) string {
	f, err := os.Open("/sys/dev/block/" + strconv.FormatUint(major, 10) + ":" + strconv.FormatUint(minor, 10) + "/uevent")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "DEVNAME="); ok {
			return "/dev/" + v
		}
	}
	return ""
}

func readV1(path string) (*Cgroup, error) {
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		return nil, errors.Join(ErrNoCgroup, err)
	}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, err
	}
	c := &Cgroup{}
	if cpu := st.CPU; cpu != nil {
		if u := cpu.Usage; u != nil {
			c.CPU.Usage, c.CPU.User, c.CPU.System = u.Total, u.User, u.Kernel
		}
		if t := cpu.Throttling; t != nil {
			c.CPU.Periods, c.CPU.ThrottledPeriods, c.CPU.Throttled = t.Periods, t.ThrottledPeriods, t.ThrottledTime
		}
	}
	if mem := st.Memory; mem != nil && mem.Usage != nil {
		c.Memory = Memory{Usage: mem.Usage.Usage, MaxUsage: mem.Usage.Max, Failcnt: mem.Usage.Failcnt, Limit: limitOrUnlimited(mem.Usage.Limit),
			WorkingSet: sub(mem.Usage.Usage, mem.TotalInactiveFile),
			RSS:        mem.TotalRSS, Cache: mem.TotalCache, MappedFile: mem.TotalMappedFile,
			PageFaults: mem.TotalPgFault, MajorFaults: mem.TotalPgMajFault}
		if mem.Kernel != nil {
			c.Memory.Kernel = mem.Kernel.Usage
		}
		if mem.Swap != nil {
			c.Memory.Swap = sub(mem.Swap.Usage, mem.Usage.Usage) // memsw counts memory + swap
		}
	}
	c.OOMKills = oomKills(filepath.Join(cgroup.ControllerDir(path, "memory"), "memory.oom_control"))
	if p := st.Pids; p != nil {
		c.Pids, c.PidsLimit = p.Current, p.Limit
	}
	if b := st.Blkio; b != nil {
		for _, e := range b.IoServiceBytesRecursive {
			c.IOBytes = append(c.IOBytes, IO{Device: e.Device, Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
		}
		for _, e := range b.IoServicedRecursive {
			c.IOOps = append(c.IOOps, IO{Device: e.Device, Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
		}
	}
	return c, nil
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// oomKills reads the "oom_kill" count of a v1 memory.oom_control file.
func oomKills(path string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == "oom_kill" {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

// processCounts counts open descriptors, sockets among them, and threads
// of the processes listed in a cgroup.procs file.
func processCounts(procsFile string) (fds, sockets, threads uint64) {
	data, err := os.ReadFile(procsFile)
	if err != nil {
		return
	}
	for _, pid := range strings.Fields(string(data)) {
		ents, _ := os.ReadDir("/proc/" + pid + "/fd")
		for _, e := range ents {
			fds++
			if l, err := os.Readlink("/proc/" + pid + "/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
				sockets++
			}
		}
		tasks, _ := os.ReadDir("/proc/" + pid + "/task")
		threads += uint64(len(tasks))
	}
	return
}

// Unlimited is Memory.Limit of a cgroup without a memory limit. The kernel
// says so differently per version: v2 "max" (read as the largest uint64),
// v1 the largest page-aligned int64; either is far above any real limit.
const Unlimited = ^uint64(0)

func limitOrUnlimited(l uint64) uint64 {
	if l == 0 || l >= 1<<62 {
		return Unlimited
	}
	return l
}

// AvailableBytes is what kubelet's eviction and the Summary API call
// available memory: the limit minus the working set, as cAdvisor computes
// it; ok is false for a cgroup without a limit.
func (m Memory) AvailableBytes() (uint64, bool) {
	if m.Limit == Unlimited || m.Limit == 0 {
		return 0, false
	}
	return sub(m.Limit, m.WorkingSet), true
}
