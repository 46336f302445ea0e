package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ------------------------------------------------------------------- scale --
//
// scale starts pods × 2 containers with par workers in flight, as kubelet's
// pod workers do (each worker: RunPodSandbox, CreateContainer ×2,
// StartContainer ×2 for its pod), then stops and removes every pod with par
// in flight. Per run and runtime it reports the wall time of both phases,
// p50/p99 of each call, the CPU the daemon used, the CPU of the daemon's
// cgroup (daemon plus the shims/monitors and runc it forked), and the
// daemon's peak RSS.

// scaleOps are the timed calls, in report order.
var scaleOps = []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopPodSandbox", "RemovePodSandbox"}

type scaleOpts struct {
	img, logDir string
	pods, par   int
	rounds      int
	pids        map[string]int    // runtime label -> daemon pid
	cgroups     map[string]string // runtime label -> cgroup dir the daemon was moved to
}

func scaleRows(o scaleOpts) (start, remove, cpu, cgCPU, rss string, ops []string) {
	start = fmt.Sprintf("scale: %d pods x 2 start (%d in flight)", o.pods, o.par)
	remove = fmt.Sprintf("scale: %d pods x 2 remove (%d in flight)", o.pods, o.par)
	cpu = "scale: daemon CPU s"
	cgCPU = "scale: daemon + shims/monitors CPU s (cgroup)"
	rss = "scale: daemon peak RSS"
	for _, op := range scaleOps {
		ops = append(ops, "scale: "+op+" p50", "scale: "+op+" p99")
	}
	return
}

func scale(cs []*client, o scaleOpts) {
	start, remove, cpu, cgCPU, rss, opRows := scaleRows(o)
	all := append([]string{start, remove, cpu, cgCPU, rss}, opRows...)
	for _, c := range cs {
		if err := ensureImage(c, o.img); err != nil {
			c.fail("PullImage", err, all...)
		}
	}
	for r := 0; r < o.rounds; r++ {
		for _, c := range order(cs, r) {
			if c.dead {
				continue
			}
			logf("%s: scale round %d/%d: %d pods x 2 containers, %d in flight", c.label, r+1, o.rounds, o.pods, o.par)
			scaleOnce(c, o, r, all)
		}
	}
}

// procCPU is utime+stime of pid in seconds (/proc/PID/stat fields 14, 15;
// the command name before them may hold spaces, so count after its ')').
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/PID/stat")
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (ut + st) / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports (sysconf(_SC_CLK_TCK) without cgo).
const clockTicks = 100

// cgroupCPU is the CPU time in seconds charged to a cgroup and its
// descendants: cpuacct.usage (v1, ns) or usage_usec of cpu.stat (v2).
func cgroupCPU(dir string) (float64, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil {
		ns, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		return ns / 1e9, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "usage_usec" {
			us, err := strconv.ParseFloat(f[1], 64)
			return us / 1e6, err
		}
	}
	return 0, fmt.Errorf("%s/cpu.stat: no usage_usec", dir)
}

func statusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// rssPeak follows the daemon's peak RSS from now on: the kernel's high-water
// mark, reset first (clear_refs 5), and, where the reset is refused, the
// largest VmRSS seen by polling every 20 ms.
type rssPeak struct {
	pid   int
	reset bool
	max   atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

func watchRSS(pid int) *rssPeak {
	p := &rssPeak{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	p.reset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	go func() {
		defer close(p.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if kb, err := statusKB(pid, "VmRSS"); err == nil && kb > p.max.Load() {
				p.max.Store(kb)
			}
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *rssPeak) end() (int64, error) {
	close(p.stop)
	<-p.done
	peak := p.max.Load()
	if p.reset {
		hwm, err := statusKB(p.pid, "VmHWM")
		if err != nil {
			return 0, err
		}
		peak = max(peak, hwm)
	}
	if peak == 0 {
		return 0, errors.New("no RSS reading")
	}
	return peak, nil
}

// pctl is the nearest-rank p-th percentile of sorted durations.
func pctl(sorted []time.Duration, p float64) time.Duration {
	k := int(float64(len(sorted))*p/100 + 0.999999)
	return sorted[min(max(k, 1), len(sorted))-1]
}

// pool runs f(i) for i in [0, n) on par workers and returns the first error.
func pool(n, par int, f func(i int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

type opErr struct {
	op  string
	err error
}

func (e *opErr) Error() string { return e.op + ": " + e.err.Error() }
func (e *opErr) Unwrap() error { return e.err }

func scaleOnce(c *client, o scaleOpts, round int, rows []string) {
	start, remove, cpu, cgCPU, rss, _ := scaleRows(o)
	var (
		mu    sync.Mutex
		durs  = map[string][]time.Duration{}
		podID = make([]string, o.pods)
	)
	record := func(op string, d time.Duration) {
		mu.Lock()
		durs[op] = append(durs[op], d)
		mu.Unlock()
	}
	call := func(op string, f func() error) error {
		d, err := timed(f)
		if err != nil {
			return &opErr{op, err}
		}
		record(op, d)
		return nil
	}
	pid, cg := o.pids[c.label], o.cgroups[c.label]
	var cpu0, cg0 float64
	var cpuErr, cgErr error
	var peak *rssPeak
	if pid > 0 {
		cpu0, cpuErr = procCPU(pid)
		peak = watchRSS(pid)
	}
	if cg != "" {
		cg0, cgErr = cgroupCPU(cg)
	}

	t0 := time.Now()
	err := pool(o.pods, o.par, func(i int) error {
		ctx, cancel := callCtx()
		defer cancel()
		pc := podConfig(fmt.Sprintf("scale-r%d", round), i, o.logDir)
		if err := call("RunPodSandbox", func() error {
			r, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
			podID[i] = r.GetPodSandboxId()
			return err
		}); err != nil {
			return err
		}
		var ids [2]string
		for k := range ids {
			if err := call("CreateContainer", func() error {
				r, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
					PodSandboxId: podID[i], Config: containerConfig(fmt.Sprintf("c%d", k), o.img), SandboxConfig: pc})
				ids[k] = r.GetContainerId()
				return err
			}); err != nil {
				return err
			}
		}
		for _, id := range ids {
			if err := call("StartContainer", func() error {
				_, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
	dStart := time.Since(t0)

	// Remove whatever was created, even after a failure, so that the
	// next phase starts clean; only a complete run is reported.
	t1 := time.Now()
	rmErr := pool(o.pods, o.par, func(i int) error {
		if podID[i] == "" {
			return nil
		}
		ctx, cancel := callCtx()
		defer cancel()
		if err := call("StopPodSandbox", func() error {
			_, err := c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID[i]})
			return err
		}); err != nil {
			return err
		}
		return call("RemovePodSandbox", func() error {
			_, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID[i]})
			return err
		})
	})
	dRemove := time.Since(t1)

	var rssKB int64
	var rssErr error
	if peak != nil {
		rssKB, rssErr = peak.end()
	}
	if err = errors.Join(err, rmErr); err != nil {
		var oe *opErr
		call := "scale"
		if errors.As(err, &oe) {
			call, err = oe.op, oe.err
		}
		c.fail(call, err, rows...)
		return
	}

	emit(sample{Runtime: c.label, Op: start, Value: ms(dStart), Unit: "ms"})
	emit(sample{Runtime: c.label, Op: remove, Value: ms(dRemove), Unit: "ms"})
	for _, op := range scaleOps {
		d := durs[op]
		sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
		emit(sample{Runtime: c.label, Op: "scale: " + op + " p50", Value: ms(pctl(d, 50)), Unit: "ms"})
		emit(sample{Runtime: c.label, Op: "scale: " + op + " p99", Value: ms(pctl(d, 99)), Unit: "ms"})
	}
	switch {
	case pid == 0:
		emit(sample{Runtime: c.label, Op: cpu, Error: "no daemon pid given"})
	case cpuErr != nil:
		emit(sample{Runtime: c.label, Op: cpu, Error: cpuErr.Error()})
	default:
		if cpu1, err := procCPU(pid); err != nil {
			emit(sample{Runtime: c.label, Op: cpu, Error: err.Error()})
		} else {
			emit(sample{Runtime: c.label, Op: cpu, Value: cpu1 - cpu0, Unit: "s"})
		}
	}
	switch {
	case cg == "":
		emit(sample{Runtime: c.label, Op: cgCPU, Error: "daemon not in a cgroup of its own"})
	case cgErr != nil:
		emit(sample{Runtime: c.label, Op: cgCPU, Error: cgErr.Error()})
	default:
		if cg1, err := cgroupCPU(cg); err != nil {
			emit(sample{Runtime: c.label, Op: cgCPU, Error: err.Error()})
		} else {
			emit(sample{Runtime: c.label, Op: cgCPU, Value: cg1 - cg0, Unit: "s"})
		}
	}
	switch {
	case pid == 0:
		emit(sample{Runtime: c.label, Op: rss, Error: "no daemon pid given"})
	case rssErr != nil:
		emit(sample{Runtime: c.label, Op: rss, Error: rssErr.Error()})
	default:
		emit(sample{Runtime: c.label, Op: rss, Value: float64(rssKB), Unit: "kB"})
	}
	logf("%s: scale round %d: start %.1fs, remove %.1fs", c.label, round+1, dStart.Seconds(), dRemove.Seconds())
}

// cgroupFor moves pid into a cgroup of its own named name, so that the CPU
// of everything it forks from now on (containerd's shims, crivet's
// monitors, runc until its init joins the container's cgroup, CNI plugins)
// is charged there. It uses the v1 cpuacct hierarchy or, on a unified
// host, the v2 root; it returns the cgroup directory.
func cgroupFor(pid int, name string) (string, error) {
	root := "/sys/fs/cgroup/cpuacct"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		root = "/sys/fs/cgroup"
	} else if _, err := os.Stat(filepath.Join(root, "cpuacct.usage")); err != nil {
		return "", errors.New("no cpuacct hierarchy and no cgroup v2 mount")
	}
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return "", fmt.Errorf("move pid %d to %s: %w", pid, dir, err)
	}
	return dir, nil
}
