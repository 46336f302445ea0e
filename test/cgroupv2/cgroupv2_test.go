// Package cgroupv2 checks crivet against the kernel's own cgroup-v2 files:
// limits, stats, OOM kills and resource updates of pods and containers,
// under both cgroup drivers. It needs a cgroup-v2 host with systemd as PID
// 1, root, and crivet built: it runs inside the QEMU guest of run.sh
// (`make cgroupv2-test`), as a `go test -c` binary, and skips elsewhere.
//
// Every comparison with a kernel file is bracketed: the file is read,
// then crivet's number, then the file again; a monotonic counter must lie
// between the two reads, any other value must equal them when they agree
// (the reads are repeated until they do).
package cgroupv2

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/test/fixtures"
	godbus "github.com/godbus/dbus/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// requireV2 skips on a v1 host unless the run demands v2 (the guest does:
// a guest that booted without v2 must fail, not pass by skipping).
func requireV2(t *testing.T) (bin string) {
	t.Helper()
	if cgroups.Mode() != cgroups.Unified {
		if os.Getenv("CRIVET_CGROUPV2_REQUIRED") != "" {
			t.Fatalf("cgroup mode %v, want unified (cgroup v2 only)", cgroups.Mode())
		}
		t.Skip("not a cgroup-v2 host: run test/cgroupv2/run.sh")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	bin = os.Getenv("CRIVET_BIN")
	if bin == "" {
		t.Fatal("CRIVET_BIN (the directory of crivet, crivet-pause, crivet-monitor) not set")
	}
	return bin
}

// daemon is one crivet with its own root, registry and CNI network.
type daemon struct {
	t      *testing.T
	dir    string
	sock   string
	cmd    *exec.Cmd
	log    string
	rc     runtimeapi.RuntimeServiceClient
	ic     runtimeapi.ImageServiceClient
	driver cgroup.Driver
}

func startDaemon(t *testing.T, bin string, driver cgroup.Driver, reg *fixtures.Registry) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "crivet-v2-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, sock: filepath.Join(dir, "crivet.sock"), log: filepath.Join(dir, "crivet.log"), driver: driver}
	fixtures.WriteRegistriesConf(t, filepath.Join(dir, "registries.conf"), reg)
	write := func(name, content string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("policy.json", `{"default":[{"type":"insecureAcceptAnything"}]}`)
	write("crivet.toml", "# everything on the command line\n")
	write("net.d/10-v2.conflist", fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "crivet-v2", "plugins": [
 {"type": "bridge", "bridge": "crivetv2", "isGateway": true, "ipMasq": false,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.199.0.0/24"}]], "dataDir": %q}}]}`, filepath.Join(dir, "ipam")))
	runc := os.Getenv("CRIVET_RUNC")
	if runc == "" {
		runc = "runc"
	}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(filepath.Join(bin, "crivet"),
		"--config", filepath.Join(dir, "crivet.toml"),
		"--listen", d.sock, "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--signature-policy", filepath.Join(dir, "policy.json"), "--signature-policy-dir", filepath.Join(dir, "policies.d"),
		"--registries-conf", filepath.Join(dir, "registries.conf"), "--cni-config-dir", filepath.Join(dir, "net.d"),
		"--cni-plugin-dir", "/usr/lib/cni,/opt/cni/bin", "--runtime", runc, "--cgroup-manager", string(driver))
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		d.removeAll()
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			d.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("crivet's log (tail):\n%s", b)
		}
		exec.Command("ip", "link", "del", "crivetv2").Run()
		os.RemoveAll(dir)
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("unix", d.sock); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(d.log)
			t.Fatalf("crivet exited: %v\n%s", err, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("crivet did not listen within 60s")
		}
	}
	conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d.rc, d.ic = runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	return d
}

// removeAll removes every pod, so cleanup leaves no cgroup or scope behind.
func (d *daemon) removeAll() {
	if d.rc == nil {
		return
	}
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods, err := d.rc.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		d.rc.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
		d.rc.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id})
	}
}

// kernelFile reads one file of a cgroup directory (relative to the v2 mount).
func kernelFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cgroup.Root, dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// keyed reads "key value" lines (cpu.stat, memory.stat, memory.events).
func keyed(t *testing.T, dir, name, key string) uint64 {
	t.Helper()
	for _, l := range strings.Split(kernelFile(t, dir, name), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == key {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("%s/%s: %q: %v", dir, name, l, err)
			}
			return n
		}
	}
	t.Fatalf("%s/%s has no %q", dir, name, key)
	return 0
}

func number(t *testing.T, dir, name string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(kernelFile(t, dir, name), 10, 64)
	if err != nil {
		t.Fatalf("%s/%s: %v", dir, name, err)
	}
	return n
}

// ioStat is io.stat as device ("254:0") → key → value.
func ioStat(t *testing.T, dir string) map[string]map[string]uint64 {
	t.Helper()
	out := map[string]map[string]uint64{}
	for _, l := range strings.Split(kernelFile(t, dir, "io.stat"), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		out[f[0]] = map[string]uint64{}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			out[f[0]][k], _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return out
}

// settled reads the kernel's value, crivet's, and the kernel's again until
// the two kernel reads agree, and returns that pair; the test fails if
// they never agree in 30 tries (a container that never settles).
func settled[T comparable](t *testing.T, what string, kernel func() T, crivet func() T) (T, T) {
	t.Helper()
	var k1, c, k2 T
	for i := 0; i < 30; i++ {
		k1, c, k2 = kernel(), crivet(), kernel()
		if k1 == k2 {
			return k1, c
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: the kernel's value never settled (last %v, %v)", what, k1, k2)
	return k1, c
}

// podCgroup makes the pod's cgroup as kubelet does for its driver, with a
// memory limit: a directory with controllers enabled (cgroupfs), or a
// transient slice unit over D-Bus (systemd). It returns the directory.
func podCgroup(t *testing.T, driver cgroup.Driver, parent string, memMax uint64) string {
	t.Helper()
	dir, err := driver.PodDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if driver == cgroup.Systemd {
		conn, err := sddbus.NewWithContext(ctx(t))
		if err != nil {
			t.Fatalf("systemd's D-Bus: %v", err)
		}
		defer conn.Close()
		done := make(chan string, 1)
		if _, err := conn.StartTransientUnitContext(ctx(t), parent, "replace", []sddbus.Property{
			sddbus.PropDescription("crivet cgroup-v2 test pod"),
			{Name: "MemoryAccounting", Value: godbus.MakeVariant(true)},
			{Name: "CPUAccounting", Value: godbus.MakeVariant(true)},
			{Name: "IOAccounting", Value: godbus.MakeVariant(true)},
			{Name: "TasksAccounting", Value: godbus.MakeVariant(true)},
			{Name: "MemoryMax", Value: godbus.MakeVariant(memMax)},
		}, done); err != nil {
			t.Fatalf("start slice %s: %v", parent, err)
		}
		if r := <-done; r != "done" {
			t.Fatalf("start slice %s: %s", parent, r)
		}
		t.Cleanup(func() {
			c, err := sddbus.NewWithContext(context.Background())
			if err == nil {
				c.StopUnitContext(context.Background(), parent, "replace", nil)
				c.Close()
			}
		})
	} else {
		// Each level enables the controllers for the next, as kubelet's
		// cgroupfs manager does.
		p := cgroup.Root
		for _, el := range strings.Split(strings.Trim(dir, "/"), "/") {
			if err := os.WriteFile(filepath.Join(p, "cgroup.subtree_control"), []byte("+cpu +io +memory +pids"), 0o644); err != nil {
				t.Fatalf("enable controllers in %s: %v", p, err)
			}
			p = filepath.Join(p, el)
			if err := os.Mkdir(p, 0o755); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(p, "memory.max"), []byte(strconv.FormatUint(memMax, 10)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Leaf first; a level still used by another test stays.
			for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
				os.Remove(filepath.Join(cgroup.Root, d))
			}
		})
	}
	if got := number(t, dir, "memory.max"); got != memMax {
		t.Fatalf("pod %s memory.max %d, want %d", dir, got, memMax)
	}
	return dir
}

func TestCgroupV2Node(t *testing.T) {
	bin := requireV2(t)
	reg := fixtures.StartRegistry(t)
	img := fixtures.PushBusybox(t, reg.Ref("v2/busybox:1"), fixtures.BusyboxConfig{})
	t.Logf("kernel cgroup controllers: %s", kernelFile(t, "/", "cgroup.controllers"))
	for _, driver := range []cgroup.Driver{cgroup.Cgroupfs, cgroup.Systemd} {
		t.Run(string(driver), func(t *testing.T) { testDriver(t, bin, driver, reg, img.Ref) })
	}
}

func testDriver(t *testing.T, bin string, driver cgroup.Driver, reg *fixtures.Registry, image string) {
	d := startDaemon(t, bin, driver, reg)
	rc := d.rc
	cfg, err := rc.RuntimeConfig(ctx(t), &runtimeapi.RuntimeConfigRequest{})
	if err != nil || cfg.GetLinux().GetCgroupDriver().String() != strings.ToUpper(string(driver)) {
		t.Fatalf("RuntimeConfig %v %v, want %s", cfg, err, driver)
	}
	if _, err := d.ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		t.Fatalf("pull: %v", err)
	}

	// The pod's cgroup, as kubelet names it for the driver.
	uid := "v2" + string(driver)
	parent := "/kubepods/burstable/pod" + uid
	if driver == cgroup.Systemd {
		parent = "kubepods-burstable-pod" + uid + ".slice"
	}
	const podMem = 192 << 20
	podDir := podCgroup(t, driver, parent, podMem)
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "v2-" + string(driver), Namespace: "default", Uid: uid},
		LogDirectory: filepath.Join(d.dir, "logs"),
		Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: parent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}}},
	}
	pod, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	dirOf := func(id string) string {
		t.Helper()
		p, err := driver.ContainerPath(parent, id)
		if err != nil {
			t.Fatal(err)
		}
		dir, err := driver.Dir(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(dir, podDir+"/") {
			t.Fatalf("cgroup %s of %s is not inside the pod's %s", dir, id, podDir)
		}
		return dir
	}
	// The infra process lives in the pod's cgroup too.
	if procs := kernelFile(t, dirOf(pod.PodSandboxId), "cgroup.procs"); procs == "" {
		t.Fatalf("no infra process in %s", dirOf(pod.PodSandboxId))
	}

	create := func(name string, args []string, res *runtimeapi.LinuxContainerResources) string {
		t.Helper()
		c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: image},
				Command: args, LogPath: name + ".log", Linux: &runtimeapi.LinuxContainerConfig{Resources: res}}})
		if err != nil {
			t.Fatalf("CreateContainer %s: %v", name, err)
		}
		if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatalf("StartContainer %s: %v", name, err)
		}
		return c.ContainerId
	}

	// A container with limits that holds 8 MB, writes 8 MiB to its
	// writable layer through to the disk, then sleeps.
	res := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 96 << 20, CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 512}
	work := create("work", []string{"sh", "-c", `x=$(head -c 8000000 /dev/zero | tr '\0' x); dd if=/dev/zero of=/io.bin bs=1M count=8 conv=fsync; sync; ls -l /io.bin; touch /done; sleep 100000; echo ${#x}`}, res)
	wdir := dirOf(work)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if r, err := rc.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: work, Cmd: []string{"test", "-e", "/done"}, Timeout: 30}); err == nil && r.ExitCode == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the work container did not finish its writes in 2 min")
		}
	}

	// Limits, in the kernel's files.
	if got := number(t, wdir, "memory.max"); got != 96<<20 {
		t.Errorf("memory.max %d, want %d", got, 96<<20)
	}
	if got := kernelFile(t, wdir, "cpu.max"); got != "50000 100000" {
		t.Errorf("cpu.max %q, want \"50000 100000\"", got)
	}
	if got := number(t, wdir, "cpu.weight"); got == 100 {
		t.Errorf("cpu.weight %d: the default, the 512 shares were not applied", got)
	} else {
		t.Logf("cpu shares 512 → cpu.weight %d", got)
	}
	if driver == cgroup.Systemd {
		unit := "crivet-" + work + ".scope"
		if got := systemctlShow(t, unit, "ControlGroup"); got != wdir {
			t.Errorf("%s: systemd's ControlGroup %q, crivet computes %q", unit, got, wdir)
		}
		if got := systemctlShow(t, unit, "MemoryMax"); got != strconv.Itoa(96<<20) {
			t.Errorf("%s MemoryMax %q, want %d", unit, got, 96<<20)
		}
	}

	// Stats against the kernel.
	cstats := func() *runtimeapi.ContainerStats {
		t.Helper()
		r, err := rc.ContainerStats(ctx(t), &runtimeapi.ContainerStatsRequest{ContainerId: work})
		if err != nil {
			t.Fatal(err)
		}
		return r.Stats
	}
	k1 := keyed(t, wdir, "cpu.stat", "usage_usec") * 1000
	cpu := cstats().GetCpu().GetUsageCoreNanoSeconds().GetValue()
	k2 := keyed(t, wdir, "cpu.stat", "usage_usec") * 1000
	if cpu < k1 || cpu > k2 || cpu == 0 {
		t.Errorf("CPU %d ns, kernel's cpu.stat usage_usec between %d and %d ns", cpu, k1, k2)
	}
	workingSet := func(dir string) func() uint64 {
		return func() uint64 {
			return number(t, dir, "memory.current") - min(number(t, dir, "memory.current"), keyed(t, dir, "memory.stat", "inactive_file"))
		}
	}
	usage := func(dir string) func() uint64 { return func() uint64 { return number(t, dir, "memory.current") } }
	if k, c := settled(t, "memory.current", usage(wdir), func() uint64 { return cstats().GetMemory().GetUsageBytes().GetValue() }); k != c || c < 8_000_000 {
		t.Errorf("memory usage %d, kernel's memory.current %d (want ≥ the 8 MB the shell holds)", c, k)
	}
	if k, c := settled(t, "working set", workingSet(wdir), func() uint64 { return cstats().GetMemory().GetWorkingSetBytes().GetValue() }); k > c+(1<<20) || c > k+(1<<20) {
		// memory.current and memory.stat are two reads: allow a page-cache MiB.
		t.Errorf("working set %d, kernel's memory.current - inactive_file %d", c, k)
	}
	if k, c := settled(t, "anon", func() uint64 { return keyed(t, wdir, "memory.stat", "anon") }, func() uint64 { return cstats().GetMemory().GetRssBytes().GetValue() }); k != c {
		t.Errorf("RSS %d, kernel's memory.stat anon %d", c, k)
	}

	// Pids, IO and OOM counters come through the CRI metrics.
	metric := func(id, name string, labels ...string) (uint64, bool) {
		t.Helper()
		r, err := rc.ListPodSandboxMetrics(ctx(t), &runtimeapi.ListPodSandboxMetricsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, pm := range r.PodMetrics {
			for _, cm := range pm.ContainerMetrics {
				if cm.ContainerId != id {
					continue
				}
				for _, m := range cm.Metrics {
					// Base labels: container, pod, namespace, image; then the metric's own.
					if m.Name == name && len(m.LabelValues) >= 4 && strings.Join(m.LabelValues[4:], ",") == strings.Join(labels, ",") {
						return m.Value.GetValue(), true
					}
				}
			}
		}
		return 0, false
	}
	if k, c := settled(t, "pids.current", func() uint64 { return number(t, wdir, "pids.current") }, func() uint64 { v, _ := metric(work, "container_processes"); return v }); k != c || c < 2 {
		t.Errorf("container_processes %d, kernel's pids.current %d (want sh and sleep)", c, k)
	}
	if _, ok := metric(work, "container_oom_events_total"); !ok {
		t.Error("no container_oom_events_total")
	}
	io := ioStat(t, wdir)
	var wrote string
	for dev, v := range io {
		if v["wbytes"] >= 8<<20 {
			wrote = dev
		}
	}
	if wrote == "" {
		out, _ := os.ReadFile(filepath.Join(d.dir, "logs", "work.log"))
		t.Errorf("io.stat %v: no device with the 8 MiB the container wrote; the pod's io.stat %v, the root's %v; mounts %s; container log:\n%s",
			io, ioStat(t, podDir), ioStat(t, "/"), mountOf(filepath.Join(d.dir, "root")), out)
	} else {
		for _, m := range []struct{ metric, key string }{
			{"container_fs_writes_bytes_total", "wbytes"}, {"container_fs_reads_bytes_total", "rbytes"},
			{"container_fs_writes_total", "wios"}, {"container_fs_reads_total", "rios"},
		} {
			k, c := settled(t, m.key, func() uint64 { return ioStat(t, wdir)[wrote][m.key] }, func() uint64 { v, _ := metric(work, m.metric, wrote); return v })
			if k != c {
				t.Errorf("%s{device=%q} %d, kernel's io.stat %s %d", m.metric, wrote, c, m.key, k)
			}
			t.Logf("%s{device=%q} = %d = io.stat %s", m.metric, wrote, c, m.key)
		}
	}

	// The pod's stats come from the pod's cgroup.
	pstats := func() *runtimeapi.LinuxPodSandboxStats {
		r, err := rc.PodSandboxStats(ctx(t), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod.PodSandboxId})
		if err != nil {
			t.Fatal(err)
		}
		return r.Stats.GetLinux()
	}
	if k, c := settled(t, "pod memory.current", usage(podDir), func() uint64 { return pstats().GetMemory().GetUsageBytes().GetValue() }); k != c {
		t.Errorf("pod memory usage %d, kernel's %s/memory.current %d", c, podDir, k)
	}
	k1 = keyed(t, podDir, "cpu.stat", "usage_usec") * 1000
	cpu = pstats().GetCpu().GetUsageCoreNanoSeconds().GetValue()
	k2 = keyed(t, podDir, "cpu.stat", "usage_usec") * 1000
	if cpu < k1 || cpu > k2 {
		t.Errorf("pod CPU %d ns, kernel's between %d and %d", cpu, k1, k2)
	}

	// UpdateContainerResources reaches the kernel (and systemd's unit, or
	// a daemon-reload would undo it), and ContainerStatus reports it.
	upd := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuQuota: 20000, CpuPeriod: 100000, CpuShares: 512}
	if _, err := rc.UpdateContainerResources(ctx(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: work, Linux: upd}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if got := number(t, wdir, "memory.max"); got != 128<<20 {
		t.Errorf("after update: memory.max %d, want %d", got, 128<<20)
	}
	if got := kernelFile(t, wdir, "cpu.max"); got != "20000 100000" {
		t.Errorf("after update: cpu.max %q, want \"20000 100000\"", got)
	}
	if driver == cgroup.Systemd {
		unit := "crivet-" + work + ".scope"
		if got := systemctlShow(t, unit, "MemoryMax"); got != strconv.Itoa(128<<20) {
			t.Errorf("after update: %s MemoryMax %q, want %d", unit, got, 128<<20)
		}
		if got := systemctlShow(t, unit, "CPUQuotaPerSecUSec"); got != "200ms" {
			t.Errorf("after update: %s CPUQuotaPerSecUSec %q, want 200ms", unit, got)
		}
	}
	if st, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: work}); err != nil ||
		st.GetStatus().GetResources().GetLinux().GetMemoryLimitInBytes() != 128<<20 {
		t.Errorf("ContainerStatus after update: %v %v, want memory limit %d", st.GetStatus().GetResources(), err, 128<<20)
	}

	// An OOM kill: the kernel counts it in memory.events, crivet reports
	// it on the status and in the stopped event.
	events, err := rc.GetContainerEvents(ctx(t), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	podOOMs := keyed(t, podDir, "memory.events", "oom_kill")
	oom := create("oom", []string{"sh", "-c", `x=$(head -c 200000000 /dev/zero | tr '\0' x); echo ${#x}`}, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20})
	var stopped *runtimeapi.ContainerEventResponse
	for stopped == nil {
		ev, err := events.Recv()
		if err != nil {
			t.Fatalf("events: %v (the OOM container did not stop)", err)
		}
		if ev.ContainerId == oom && ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
			stopped = ev
		}
	}
	var inEvent string
	for _, s := range stopped.ContainersStatuses {
		if s.Id == oom {
			inEvent = s.Reason
		}
	}
	if inEvent != "OOMKilled" {
		t.Errorf("stopped event of the OOM container: reason %q, want OOMKilled", inEvent)
	}
	st, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: oom})
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Status.Reason != "OOMKilled" {
		t.Errorf("OOM container: %v %v, want exited with reason OOMKilled", st.GetStatus(), err)
	} else {
		t.Logf("OOM container exited %d, reason %s", st.Status.ExitCode, st.Status.Reason)
	}
	if got := keyed(t, podDir, "memory.events", "oom_kill"); got <= podOOMs {
		t.Errorf("pod memory.events oom_kill %d, was %d: the kill was not in the pod's cgroup", got, podOOMs)
	}

	// The pod's own limit holds every container: one without a limit of
	// its own is OOM-killed at the pod's.
	big := create("big", []string{"sh", "-c", `x=$(head -c 300000000 /dev/zero | tr '\0' x); echo ${#x}`}, nil)
	if got := kernelFile(t, dirOf(big), "memory.max"); got != "max" {
		t.Errorf("unlimited container's memory.max %s, want max", got)
	}
	waitExited(t, rc, big, "OOMKilled")

	// Stopping and removing the pod removes its containers' cgroups (and
	// scopes); the pod's own cgroup is kubelet's.
	ids := []string{pod.PodSandboxId, work, oom, big}
	if _, err := rc.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(cgroup.Root, dirOf(id))); err == nil {
			t.Errorf("cgroup %s left after the pod's removal", dirOf(id))
		}
		if driver == cgroup.Systemd {
			if out, _ := exec.Command("systemctl", "is-active", "crivet-"+id+".scope").Output(); strings.TrimSpace(string(out)) == "active" {
				t.Errorf("scope of %s still active after the pod's removal", id)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(cgroup.Root, podDir)); err != nil {
		t.Errorf("the pod's own cgroup %s (kubelet's) is gone: %v", podDir, err)
	}
}

func waitExited(t *testing.T, rc runtimeapi.RuntimeServiceClient, id, reason string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		st, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			if st.Status.Reason != reason {
				t.Errorf("%s exited %d reason %q, want %s", st.Status.Metadata.GetName(), st.Status.ExitCode, st.Status.Reason, reason)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %v after 3 min", st.Status.Metadata.GetName(), st.Status.State)
		}
	}
}

func systemctlShow(t *testing.T, unit, prop string) string {
	t.Helper()
	out, err := exec.Command("systemctl", "show", "-P", prop, unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl show %s %s: %v %s", prop, unit, err, out)
	}
	return strings.TrimSpace(string(out))
}

// mountOf is the /proc/self/mountinfo line of the filesystem holding path.
func mountOf(path string) string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	best, bestLen := "", -1
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(path, f[4]) && len(f[4]) > bestLen {
			best, bestLen = l, len(f[4])
		}
	}
	return best
}
