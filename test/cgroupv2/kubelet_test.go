package cgroupv2

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/test/fixtures"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kubeletPods is the part of kubelet's read-only /pods answer the test reads.
type kubeletPods struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"metadata"`
		Status struct {
			Phase             string `json:"phase"`
			QOSClass          string `json:"qosClass"`
			ContainerStatuses []struct {
				Name         string         `json:"name"`
				Ready        bool           `json:"ready"`
				RestartCount int            `json:"restartCount"`
				State        containerState `json:"state"`
				LastState    containerState `json:"lastState"`
			} `json:"containerStatuses"`
		} `json:"status"`
	} `json:"items"`
}

// podView is what the test checks of one pod in kubelet's /pods.
type podView struct {
	uid, phase, qos string
	ready           map[string]bool // running and ready, by container name
	oomKilled       map[string]bool // now or last terminated as OOMKilled
}

type containerState struct {
	Running    *struct{} `json:"running"`
	Terminated *struct {
		Reason   string `json:"reason"`
		ExitCode int    `json:"exitCode"`
	} `json:"terminated"`
}

// TestKubeletOnCgroupV2 runs a real kubelet (standalone, static pods,
// systemd cgroup driver, as kubeadm and kind set it up) against crivet on
// the cgroup-v2 node: the pod comes up under kubelet's kubepods.slice with
// its limits in the kernel's files, an OOM kill reaches kubelet as
// OOMKilled, kubelet's Summary API has the container's usage, and removing
// the manifest leaves no container scope behind. It needs CRIVET_KUBELET
// (run.sh puts a kubelet of the version under test in the payload).
func TestKubeletOnCgroupV2(t *testing.T) {
	bin := requireV2(t)
	kubelet := os.Getenv("CRIVET_KUBELET")
	if kubelet == "" {
		if os.Getenv("CRIVET_KUBELET_REQUIRED") != "" {
			t.Fatal("CRIVET_KUBELET (a kubelet binary) not set")
		}
		t.Skip("CRIVET_KUBELET not set: run test/cgroupv2/run.sh")
	}
	reg := fixtures.StartRegistry(t)
	img := fixtures.PushBusybox(t, reg.Ref("v2/busybox:kubelet"), fixtures.BusyboxConfig{})
	d := startDaemon(t, bin, cgroup.Systemd, reg)

	dir := filepath.Join(d.dir, "kubelet")
	manifests := filepath.Join(dir, "manifests")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	fixtures.WriteFile(t, filepath.Join(dir, "resolv.conf"), "nameserver 127.0.0.1\n")
	fixtures.WriteFile(t, filepath.Join(dir, "config.yaml"), fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %s
fileCheckFrequency: 2s
syncFrequency: 5s
cgroupDriver: systemd
cgroupsPerQOS: true
enforceNodeAllocatable: []
failSwapOn: false
address: 127.0.0.1
readOnlyPort: 10255
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
serializeImagePulls: false
resolvConf: %s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
`, manifests, d.sock, d.sock, filepath.Join(dir, "resolv.conf")))

	logPath := filepath.Join(dir, "kubelet.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	cmd := exec.Command(kubelet, "--config", filepath.Join(dir, "config.yaml"), "--root-dir", root,
		"--cert-dir", filepath.Join(dir, "certs"), "--hostname-override", "crivet-v2", "--v=2")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kubelet: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	// Cleanups run last-in first-out: kubelet stops before crivet's
	// cleanup removes what is left.
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		// kubelet bind-mounts its root dir onto itself.
		for syscall.Unmount(root, syscall.MNT_DETACH) == nil {
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("kubelet's log (tail):\n%s", b)
		}
	})

	const (
		limitedMem = 64 << 20
		hogMem     = 32 << 20
	)
	// Guaranteed QoS (requests equal limits): kubelet puts the pod's
	// slice right under kubepods.slice.
	fixtures.WriteFile(t, filepath.Join(manifests, "v2.yaml"), fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: v2
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: limited
    image: %[1]s
    command: ["sh", "-c", "echo started; exec sleep 100000"]
    resources:
      limits: {memory: "%[2]d", cpu: "250m"}
      requests: {memory: "%[2]d", cpu: "250m"}
  - name: hog
    image: %[1]s
    command: ["tail", "/dev/zero"]
    resources:
      limits: {memory: "%[3]d", cpu: "100m"}
      requests: {memory: "%[3]d", cpu: "100m"}
`, img.Ref, limitedMem, hogMem))

	// waitPod reads kubelet's /pods until cond holds for the pod "v2".
	var last podView
	waitPod := func(what string, limit time.Duration, cond func(podView) bool) podView {
		t.Helper()
		for deadline := time.Now().Add(limit); ; time.Sleep(time.Second) {
			select {
			case err := <-exited:
				t.Fatalf("kubelet exited: %v", err)
			default:
			}
			if p, ok := readPod("v2"); ok {
				last = p
				if cond(p) {
					return p
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v (last status %+v)", what, limit, last)
			}
		}
	}
	// 1. The pod runs.
	p := waitPod("container limited running and ready", 5*time.Minute, func(p podView) bool { return p.ready["limited"] })
	if p.qos != "Guaranteed" {
		t.Errorf("QoS class %q, want Guaranteed", p.qos)
	}

	// 2. Its container is in kubelet's pod slice, with its limits.
	id := containerNamed(t, d, "limited")
	cg := processCgroup(t, d, id)
	podSlice := "kubepods-pod" + strings.ReplaceAll(p.uid, "-", "_") + ".slice"
	if want := "/kubepods.slice/" + podSlice + "/crivet-" + id + ".scope"; cg != want {
		t.Errorf("container cgroup %q, want %q (kubelet's pod slice, crivet's scope)", cg, want)
	}
	if got := number(t, cg, "memory.max"); got != limitedMem {
		t.Errorf("memory.max %d, want %d", got, limitedMem)
	}
	if got := kernelFile(t, cg, "cpu.max"); got != "25000 100000" {
		t.Errorf("cpu.max %q, want \"25000 100000\" (250m)", got)
	}
	if got := number(t, "/kubepods.slice/"+podSlice, "memory.max"); got != limitedMem+hogMem {
		t.Errorf("pod slice memory.max %d, want %d (kubelet's, the sum of the limits)", got, limitedMem+hogMem)
	}
	t.Logf("pod %s (%s) Running; container limited %s in %s", p.uid, p.qos, id[:12], cg)

	// 3. The hog is OOM-killed at its limit, and kubelet says so.
	waitPod("container hog reported OOMKilled", 5*time.Minute, func(p podView) bool { return p.oomKilled["hog"] })
	t.Log("kubelet reports container hog OOMKilled")

	// 4. kubelet's Summary API has the running container's usage.
	var summary struct {
		Pods []struct {
			PodRef     struct{ Name string } `json:"podRef"`
			Containers []struct {
				Name   string                                  `json:"name"`
				CPU    *struct{ UsageCoreNanoSeconds *uint64 } `json:"cpu"`
				Memory *struct {
					WorkingSetBytes *uint64 `json:"workingSetBytes"`
				} `json:"memory"`
			} `json:"containers"`
		} `json:"pods"`
	}
	var found bool
	for deadline := time.Now().Add(3 * time.Minute); !found; time.Sleep(2 * time.Second) {
		if resp, err := http.Get("http://127.0.0.1:10255/stats/summary"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			summary.Pods = nil
			if json.Unmarshal(b, &summary) == nil {
				for _, sp := range summary.Pods {
					for _, c := range sp.Containers {
						if strings.HasPrefix(sp.PodRef.Name, "v2") && c.Name == "limited" && c.CPU != nil && c.CPU.UsageCoreNanoSeconds != nil &&
							c.Memory != nil && c.Memory.WorkingSetBytes != nil && *c.Memory.WorkingSetBytes > 0 {
							found = true
						}
					}
				}
			}
		}
		if !found && time.Now().After(deadline) {
			t.Fatal("kubelet's /stats/summary has no CPU and working set for container limited in 3 min")
		}
	}

	t.Log("kubelet's /stats/summary has container limited's CPU and working set")

	// 5. Removing the manifest stops the pod: no container scope and no
	// pod slice are left, and crivet's pod is not ready.
	if err := os.Remove(filepath.Join(manifests, "v2.yaml")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(4 * time.Minute); ; time.Sleep(time.Second) {
		_, sliceErr := os.Stat(filepath.Join(cgroup.Root, "kubepods.slice", podSlice))
		_, scopeErr := os.Stat(filepath.Join(cgroup.Root, cg))
		pods, err := d.rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{
			Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
		if err != nil {
			t.Fatal(err)
		}
		if os.IsNotExist(sliceErr) && os.IsNotExist(scopeErr) && len(pods.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("4 min after the manifest went: pod slice %v, container scope %v, %d ready pods", sliceErr, scopeErr, len(pods.Items))
		}
	}
}

// readPod reads the static pod name from kubelet's read-only /pods.
func readPod(name string) (podView, bool) {
	resp, err := http.Get("http://127.0.0.1:10255/pods")
	if err != nil {
		return podView{}, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var pods kubeletPods
	if json.Unmarshal(b, &pods) != nil {
		return podView{}, false
	}
	for _, p := range pods.Items {
		if p.Metadata.Name != name+"-crivet-v2" && p.Metadata.Name != name {
			continue
		}
		s := podView{uid: p.Metadata.UID, phase: p.Status.Phase, qos: p.Status.QOSClass, ready: map[string]bool{}, oomKilled: map[string]bool{}}
		for _, c := range p.Status.ContainerStatuses {
			s.ready[c.Name] = c.Ready && c.State.Running != nil
			for _, st := range []containerState{c.State, c.LastState} {
				if st.Terminated != nil && st.Terminated.Reason == "OOMKilled" {
					s.oomKilled[c.Name] = true
				}
			}
		}
		return s, true
	}
	return podView{}, false
}

// containerNamed is the ID of the running container kubelet named name.
func containerNamed(t *testing.T, d *daemon, name string) string {
	t.Helper()
	r, err := d.rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{"io.kubernetes.container.name": name}}})
	if err != nil || len(r.Containers) != 1 {
		t.Fatalf("running containers named %s: %v %v", name, r, err)
	}
	return r.Containers[0].Id
}

// processCgroup is the v2 cgroup of the container's process, as the kernel
// says in /proc/<pid>/cgroup (pid from crivet's verbose status).
func processCgroup(t *testing.T, d *daemon, id string) string {
	t.Helper()
	st, err := d.rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("verbose status of %s has no pid: %v %q", id, err, st.Info["info"])
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(info.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	path, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "0::")
	if !ok {
		t.Fatalf("/proc/%d/cgroup: %q is not a v2 entry", info.Pid, b)
	}
	return path
}
