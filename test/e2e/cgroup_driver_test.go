package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// On this host (systemd is not PID 1) the default driver is cgroupfs: a
// pod whose cgroup parent is a systemd slice comes from a kubelet set to
// the other driver and is refused; and the daemon refuses to restart with
// the systemd driver over the cgroupfs pods it has, naming both drivers.
func TestCgroupDriverMismatchesAreRefused(t *testing.T) {
	n := newNode(t)
	n.start()
	rc, _ := n.clients()
	cfg, err := rc.RuntimeConfig(ctx(t), &runtimeapi.RuntimeConfigRequest{})
	if err != nil || cfg.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Fatalf("RuntimeConfig %v %v, want CGROUPFS", cfg, err)
	}
	pod := func(name, parent string) *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
			Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: parent, SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}},
		}
	}
	_, err = rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: pod("sliced", "kubepods-besteffort-pod1.slice")})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "cgroup_manager") {
		t.Fatalf("pod with a systemd slice under cgroupfs: %v, want InvalidArgument naming cgroup_manager", err)
	}
	if _, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: pod("web", "/kubepods/besteffort/pod2")}); err != nil {
		t.Fatal(err)
	}
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}

	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(c, crivetBin, append(n.args(), "--cgroup-manager", "systemd")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `cgroup_manager is "systemd"`) || !strings.Contains(string(out), `"cgroupfs" driver`) || !strings.Contains(string(out), "drain") {
		t.Fatalf("crivet with the systemd driver over cgroupfs pods: %v\n%s", err, out)
	}
	// The refusal changed nothing: the old driver still starts, with the pod.
	n.start()
	pods, err := rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods after the refused switch: %v %v", pods, err)
	}
}
