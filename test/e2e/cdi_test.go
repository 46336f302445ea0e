package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A CDI spec file injects a device node and env into a container run by
// real runc: one device asked for in cdi_devices (kubelet's field), one by
// a cdi.k8s.io/ container annotation (the device-plugin annotation path).
// The node is a character device mknod'd into a temporary directory (the
// numbers of /dev/null, so writing to it is harmless); inside, the
// container sees it at the spec's path with those numbers and may write
// to it (the device cgroup allows it), and sees the spec's env. A device
// that no spec file has is InvalidArgument naming it, and leaves no
// container. crictl info shows the directories and devices.
func TestCDIDeviceNodeAndEnvReachTheContainer(t *testing.T) {
	n := newNode(t)
	specDir := filepath.Join(n.dir, "cdi")
	hostNode := filepath.Join(n.dir, "crivet-null")
	if err := unix.Mknod(hostNode, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	fixtures.WriteFile(t, filepath.Join(specDir, "crivet-test.yaml"), fmt.Sprintf(`cdiVersion: "0.6.0"
kind: crivet.test/dev
devices:
- name: null0
  containerEdits:
    env: ["CRIVET_CDI_NULL0=injected"]
    deviceNodes:
    - path: /dev/crivet-null0
      hostPath: %s
- name: env1
  containerEdits:
    env: ["CRIVET_CDI_ENV1=by-annotation"]
`, hostNode))
	n.extraArgs = append(n.extraArgs, "--cdi-spec-dir", specDir)
	img, podCfg, podID := n.startWithPod(t, "cdi", 0)
	rc, _ := n.clients()

	cfg := crashContainerConfig("dev", img.Ref)
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "crivet.test/dev=null0"}}
	cfg.Annotations = map[string]string{"cdi.k8s.io/crivet-test_env1": "crivet.test/dev=env1"}
	c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("create with CDI devices: %v\n%s", err, n.log)
	}
	n.ids[c.ContainerId] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	out, err := rc.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: c.ContainerId, Timeout: 10, Cmd: []string{"sh", "-c",
		`ls -l /dev/crivet-null0 && echo written > /dev/crivet-null0 && echo "null0=$CRIVET_CDI_NULL0 env1=$CRIVET_CDI_ENV1"`}})
	if err != nil || out.ExitCode != 0 {
		t.Fatalf("in the container: %v exit %d %q %q", err, out.GetExitCode(), out.GetStdout(), out.GetStderr())
	}
	lines := strings.Split(strings.TrimSpace(string(out.Stdout)), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q", out.Stdout)
	}
	// busybox ls -l: "crw-rw-rw- 1 root root 1, 3 <date> /dev/crivet-null0"
	if f := strings.Fields(lines[0]); len(f) < 6 || f[0][0] != 'c' || f[4] != "1," || f[5] != "3" {
		t.Errorf("device in the container: %q, want a char device 1, 3", lines[0])
	}
	if lines[1] != "null0=injected env1=by-annotation" {
		t.Errorf("env in the container: %q", lines[1])
	}

	// An unknown device: InvalidArgument naming it; no container made.
	bad := crashContainerConfig("bad", img.Ref)
	bad.CDIDevices = []*runtimeapi.CDIDevice{{Name: "crivet.test/dev=null0"}, {Name: "crivet.test/dev=nosuch"}}
	_, err = rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: bad, SandboxConfig: podCfg})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "crivet.test/dev=nosuch") || !strings.Contains(err.Error(), "unknown CDI device") {
		t.Fatalf("unknown CDI device: %v, want InvalidArgument naming crivet.test/dev=nosuch", err)
	}
	list, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if err != nil || len(list.Containers) != 1 {
		t.Fatalf("containers after the refusal: %v %v", err, list.GetContainers())
	}
	// The name is free again: the refusal reserved nothing.
	bad.CDIDevices = bad.CDIDevices[:1]
	c2, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: bad, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("create after the refusal: %v", err)
	}
	n.ids[c2.ContainerId] = true

	var info struct {
		CDI struct {
			Enabled  bool     `json:"enabled"`
			SpecDirs []string `json:"specDirs"`
			Devices  []string `json:"devices"`
		} `json:"cdi"`
	}
	if err := json.Unmarshal([]byte(n.mustCrictl("info")), &info); err != nil {
		t.Fatal(err)
	}
	if !info.CDI.Enabled || !slices.Equal(info.CDI.SpecDirs, []string{specDir}) || !slices.Equal(info.CDI.Devices, []string{"crivet.test/dev=env1", "crivet.test/dev=null0"}) {
		t.Errorf("crictl info cdi: %+v", info.CDI)
	}
}
