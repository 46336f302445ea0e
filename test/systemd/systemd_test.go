// Package systemd runs crivet with cgroup_manager = "systemd" on a real
// systemd: a Debian root filesystem booted with systemd-nspawn as a node
// (systemd as its PID 1, its own D-Bus), which is what kind does with its
// node containers. It is opt-in (test/systemd/run.sh, `make systemd-test`):
// the test needs the root filesystem run.sh makes and skips without it.
package systemd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/test/fixtures"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// node is a booted systemd-nspawn machine sharing the host's network (so
// it reaches the test registry on 127.0.0.1).
type node struct {
	t    *testing.T
	init int // host pid of the node's systemd
	nsp  *exec.Cmd
	log  string
}

func bootNode(t *testing.T, rootfs string, binds ...string) *node {
	t.Helper()
	start := time.Now()
	n := &node{t: t, log: filepath.Join(t.TempDir(), "nspawn.log")}
	logf, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	// No host systemd: no machined registration, and the node's own scope.
	// runc needs every capability and no nspawn syscall filter.
	args := []string{"-D", rootfs, "--register=no", "--keep-unit", "-b", "--capability=all"}
	for _, b := range binds {
		args = append(args, "--bind="+b)
	}
	n.nsp = exec.Command("systemd-nspawn", args...)
	n.nsp.Env = append(os.Environ(), "SYSTEMD_SECCOMP=0")
	n.nsp.Stdout, n.nsp.Stderr = logf, logf
	if err := n.nsp.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	t.Cleanup(n.poweroff)
	for deadline := time.Now().Add(60 * time.Second); n.init == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no systemd in the node after 60s; nspawn log:\n%s", tail(n.log))
		}
		n.init = childNamed(n.nsp.Process.Pid, "systemd")
	}
	// Its bus comes up a moment after the process.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := n.run("systemctl", "is-system-running", "--wait")
		if err == nil || strings.Contains(out, "degraded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node systemd: %v %s", err, out)
		}
	}
	// nspawn mounts the v1 controllers read-only into a node (only
	// name=systemd is writable); runc must write them, as on a real host.
	out, _ := n.run("sh", "-c", `for c in /sys/fs/cgroup/*; do mountpoint -q "$c" && mount -o remount,bind,rw "$c"; done; true`)
	t.Logf("node booted in %s %s", time.Since(start).Round(time.Millisecond), out)
	return n
}

// childNamed finds a process named comm descending from pid.
func childNamed(pid int, comm string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var p int
		if _, err := fmt.Sscan(e.Name(), &p); err != nil || p == pid {
			continue
		}
		if c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); strings.TrimSpace(string(c)) != comm {
			continue
		}
		for q := p; q > 1; q = parent(q) {
			if q == pid {
				return p
			}
		}
	}
	return 0
}

// parent reads the parent pid from /proc/<pid>/stat ("pid (comm) state ppid …").
func parent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	var state string
	var ppid int
	fmt.Sscan(s[strings.LastIndexByte(s, ')')+1:], &state, &ppid)
	return ppid
}

// run runs a command inside the node (all its namespaces).
func (n *node) run(args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(n.init), "-a"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (n *node) must(args ...string) string {
	n.t.Helper()
	out, err := n.run(args...)
	if err != nil {
		n.t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return out
}

func (n *node) poweroff() {
	if n.init != 0 {
		if _, err := n.run("systemctl", "poweroff"); err != nil {
			// No bus yet: SIGRTMIN+4 is systemd's own "power off".
			syscall.Kill(n.init, syscall.Signal(34+4))
		}
	}
	done := make(chan error, 1)
	go func() { done <- n.nsp.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		// Killing nspawn alone would leave the node's systemd running.
		if n.init != 0 {
			syscall.Kill(n.init, syscall.SIGKILL)
		}
		n.nsp.Process.Kill()
		<-done
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestCrivetOnASystemdNode(t *testing.T) {
	rootfs := os.Getenv("CRIVET_SYSTEMD_ROOTFS")
	if rootfs == "" {
		t.Skip("CRIVET_SYSTEMD_ROOTFS not set: run test/systemd/run.sh")
	}
	bin, err := filepath.Abs(os.Getenv("CRIVET_BIN"))
	if err != nil || os.Getenv("CRIVET_BIN") == "" {
		t.Fatal("CRIVET_BIN (the directory of crivet, crivet-pause, crivet-monitor) not set")
	}
	cni := "/usr/lib/cni"
	if _, err := os.Stat(filepath.Join(cni, "bridge")); err != nil {
		cni = "/opt/cni/bin"
	}
	// State of an earlier run inside the node's root filesystem.
	for _, d := range []string{"var/lib/crivet", "var/lib/crivet-ipam"} {
		os.RemoveAll(filepath.Join(rootfs, d))
	}

	reg := fixtures.StartRegistry(t)
	ref := reg.Addr + "/sd/busybox:1"
	fixtures.PushBusybox(t, ref, fixtures.BusyboxConfig{})

	work, err := os.MkdirTemp("", "crivet-sd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	fixtures.WriteRegistriesConf(t, filepath.Join(work, "registries.conf"), reg)
	write := func(name, content string) string {
		p := filepath.Join(work, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("policy.json", `{"default":[{"type":"insecureAcceptAnything"}]}`)
	// A bridge and subnet of its own: the node shares the host's network.
	write("net.d/10-sd.conflist", `{"cniVersion": "1.0.0", "name": "crivet-sd", "plugins": [
 {"type": "bridge", "bridge": "crivetsd0", "isGateway": true, "ipMasq": false,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.197.0.0/24"}]], "dataDir": "/var/lib/crivet-ipam"}}]}`)
	t.Cleanup(func() { exec.Command("ip", "link", "del", "crivetsd0").Run() })
	sock := filepath.Join(work, "crivet.sock")
	config := write("crivet.toml", fmt.Sprintf(`listen = %q
cni_config_dir = %q
cni_plugin_dirs = ["/opt/cni/bin"]
signature_policy = %q
registries_conf = %q
storage_driver = "vfs"
cgroup_manager = "systemd"
`, sock, filepath.Join(work, "net.d"), filepath.Join(work, "policy.json"), filepath.Join(work, "registries.conf")))

	n := bootNode(t, rootfs, bin+":/opt/crivet/bin", cni+":/opt/cni/bin", work)
	starts := 0
	startCrivet := func() {
		// KillMode=process: stopping crivet must leave the per-container
		// monitors (children of crivet) and the containers alone; they
		// keep the stopped unit loaded, so each start is a new unit.
		starts++
		n.must("systemd-run", "--unit", fmt.Sprintf("crivet-%d", starts), "--property=KillMode=process", "/opt/crivet/bin/crivet", "--config", config)
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(sock); err == nil {
				return
			}
			if time.Now().After(deadline) {
				out, _ := n.run("journalctl", "-u", "crivet-*", "--no-pager", "-n", "30")
				t.Fatalf("crivet did not start:\n%s", out)
			}
		}
	}
	startCrivet()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := n.run("journalctl", "-u", "crivet-*", "--no-pager", "-n", "40")
			t.Logf("crivet's journal:\n%s", out)
		}
	})
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc, ic := runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)

	rcfg, err := rc.RuntimeConfig(ctx(t), &runtimeapi.RuntimeConfigRequest{})
	if err != nil || rcfg.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_SYSTEMD {
		t.Fatalf("RuntimeConfig %v %v, want SYSTEMD", rcfg, err)
	}
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("pull: %v", err)
	}

	// A pod as kubelet's systemd driver names it, sharing one PID
	// namespace so that it has an infra process (a scope of its own).
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "sd-pod", Namespace: "default", Uid: "uid1"},
		LogDirectory: filepath.Join(work, "logs"),
		Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "kubepods-besteffort-poduid1.slice",
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}}},
	}
	begin := time.Now()
	pod, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	t.Logf("RunPodSandbox %s", time.Since(begin).Round(time.Millisecond))
	podID := pod.PodSandboxId
	checkScope := func(id string) {
		t.Helper()
		unit := "crivet-" + id + ".scope"
		if out, err := n.run("systemctl", "is-active", unit); err != nil || out != "active" {
			t.Fatalf("%s is %q (%v)", unit, out, err)
		}
		want, err := cgroup.Systemd.Dir(podCfg.Linux.CgroupParent + ":crivet:" + id)
		if err != nil {
			t.Fatal(err)
		}
		if got := n.must("systemctl", "show", "-P", "ControlGroup", unit); got != want {
			t.Fatalf("%s: systemd's ControlGroup %q, crivet computes %q", unit, got, want)
		}
		t.Logf("%s in %s", unit, want)
	}
	checkScope(podID)

	create := func(name string, args []string, mem int64) string {
		t.Helper()
		c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: ref},
				Command: args, LogPath: name + ".log",
				Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: mem}}}})
		if err != nil {
			t.Fatalf("CreateContainer %s: %v", name, err)
		}
		if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatalf("StartContainer %s: %v", name, err)
		}
		return c.ContainerId
	}
	begin = time.Now()
	sleeper := create("sleeper", []string{"sh", "-c", "x=$(head -c 8000000 /dev/zero | tr '\\0' x); sleep 1000; echo ${#x}"}, 0)
	t.Logf("create+start %s", time.Since(begin).Round(time.Millisecond))
	checkScope(sleeper)

	// Stats read the scope's cgroup; the pod's come from its slice.
	time.Sleep(time.Second)
	cs, err := rc.ContainerStats(ctx(t), &runtimeapi.ContainerStatsRequest{ContainerId: sleeper})
	if err != nil || cs.GetStats().GetMemory().GetWorkingSetBytes().GetValue() < 8_000_000 || cs.GetStats().GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 {
		dir, _ := cgroup.Systemd.Dir(podCfg.Linux.CgroupParent + ":crivet:" + sleeper)
		out, _ := n.run("sh", "-c", "cd /sys/fs/cgroup/memory"+dir+" && cat memory.usage_in_bytes cgroup.procs && for p in $(cat cgroup.procs); do cat /proc/$p/cgroup /proc/$p/status | grep -E 'memory|VmRSS|Name'; done")
		t.Fatalf("ContainerStats %v %v, want the 8 MB the shell holds and some CPU\n%s", cs, err, out)
	}
	ps, err := rc.PodSandboxStats(ctx(t), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil || ps.GetStats().GetLinux().GetMemory().GetWorkingSetBytes().GetValue() < cs.GetStats().GetMemory().GetWorkingSetBytes().GetValue() {
		t.Fatalf("PodSandboxStats %v %v, want at least the container's working set", ps, err)
	}
	t.Logf("container working set %d, pod %d", cs.GetStats().GetMemory().GetWorkingSetBytes().GetValue(), ps.GetStats().GetLinux().GetMemory().GetWorkingSetBytes().GetValue())

	// The kernel OOM-kills in the scope; the monitor reads the scope's counter.
	oom := create("oom", []string{"sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' x); echo ${#x}"}, 32<<20)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: oom})
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			if st.Status.Reason != "OOMKilled" {
				t.Fatalf("OOM container exited %d reason %q, want OOMKilled", st.Status.ExitCode, st.Status.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("OOM container still running after 30s")
		}
	}

	// Switching drivers with a pod on the node is refused, naming both.
	n.must("systemctl", "stop", "crivet-1")
	os.Remove(sock)
	out, err := n.run("/opt/crivet/bin/crivet", "--config", config, "--cgroup-manager", "cgroupfs")
	if err == nil || !strings.Contains(out, `cgroup_manager is "cgroupfs"`) || !strings.Contains(out, `"systemd" driver`) || !strings.Contains(out, "drain") {
		t.Fatalf("crivet with cgroupfs over systemd pods: %v\n%s", err, out)
	}
	t.Logf("switch refused: %s", out)
	startCrivet()

	begin = time.Now()
	if _, err := rc.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop+remove pod %s", time.Since(begin).Round(time.Millisecond))
	for _, id := range []string{podID, sleeper, oom} {
		if out, _ := n.run("systemctl", "is-active", "crivet-"+id+".scope"); out == "active" {
			t.Errorf("scope of %s still active after the pod's removal", id)
		}
		dir, _ := cgroup.Systemd.Dir(podCfg.Linux.CgroupParent + ":crivet:" + id)
		if _, err := n.run("test", "-e", "/sys/fs/cgroup/memory"+dir); err == nil {
			t.Errorf("memory cgroup %s left behind", dir)
		}
	}
}
