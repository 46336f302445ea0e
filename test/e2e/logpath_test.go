package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The monitor writes a container's log as root: a log_path leaving the
// pod's log directory, by "..", by being absolute or through a symlink,
// is refused with InvalidArgument before anything is made.
func TestCreateRefusesLogPathOutsideThePodLogDirectory(t *testing.T) {
	n := newNode(t)
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	n.start()
	rc, ic := n.clients()
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}}); err != nil {
		t.Fatal(err)
	}
	podCfg := crashPodConfig(n, "logs", false, 0)
	pod, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[pod.PodSandboxId] = true
	outside := t.TempDir()
	if err := os.MkdirAll(podCfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(podCfg.LogDirectory, "linked")); err != nil {
		t.Fatal(err)
	}
	escaped := filepath.Join(podCfg.LogDirectory, "../../../tmp/evil.log")
	for _, logPath := range []string{"../../../tmp/evil.log", "/tmp/evil.log", "a/../../b.log", "linked/0.log"} {
		cfg := crashContainerConfig("c", img.Ref)
		cfg.LogPath = logPath
		_, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cfg, SandboxConfig: podCfg})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("log_path %q: %v, want InvalidArgument", logPath, err)
		}
	}
	for _, p := range []string{escaped, "/tmp/evil.log", filepath.Join(filepath.Dir(podCfg.LogDirectory), "b.log"), filepath.Join(outside, "0.log")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("a refused create made %s", p)
		}
	}
	ctrs, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
	if err != nil || len(ctrs.Containers) != 0 {
		t.Errorf("containers after refused creates: %v %v", ctrs, err)
	}
	if ids := n.storageContainers(t); len(ids) != 0 {
		t.Errorf("storage containers after refused creates: %v", ids)
	}
	for _, d := range []string{filepath.Join(n.runRoot(), "bundles"), filepath.Join(n.root, "containers")} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("%s after refused creates: %v", d, ents)
		}
	}
	// The name was not taken by the refused creates, and a sound log_path works.
	cfg := crashContainerConfig("c", img.Ref)
	cfg.LogPath = "c/0.log"
	c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("create with log_path c/0.log: %v", err)
	}
	n.ids[c.ContainerId] = true
	if _, err := os.Stat(filepath.Join(podCfg.LogDirectory, "c", "0.log")); err != nil {
		t.Errorf("log file: %v", err)
	}
	if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	assertNodeClean(t, n)
}
