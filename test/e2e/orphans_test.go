package e2e

import (
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A kill -9 can come after a part was made and before any record names it.
// Here the records are taken away instead (the same state on disk): a
// running container's runc state, monitor, storage container and bundle,
// and a pod's directory with its namespace pins and CNI lease, all with no
// record. The next start removes every one of them.
func TestStartupRemovesPartsNoRecordOwns(t *testing.T) {
	n := newNode(t)
	img, podCfg, podID := n.startWithPod(t, "orphan", 38092)
	rc, _ := n.clients()
	c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: crashContainerConfig("orphan", img.Ref), SandboxConfig: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	n.ids[c.ContainerId] = true
	n.kill9()

	for _, rec := range []string{
		filepath.Join(n.root, "containers", c.ContainerId+".json"),
		filepath.Join(n.root, "sandboxes", podID+".json"),
	} {
		if err := os.Remove(rec); err != nil {
			t.Fatalf("take away record: %v", err)
		}
	}
	for _, part := range []string{
		filepath.Join(n.runRoot(), "runc", c.ContainerId),
		filepath.Join(n.runRoot(), "containers", c.ContainerId),
		filepath.Join(n.runRoot(), "bundles", c.ContainerId),
		filepath.Join(n.runRoot(), "sandboxes", podID, "ns", "net"),
	} {
		if _, err := os.Stat(part); err != nil {
			t.Fatalf("part %s missing before restart: %v", part, err)
		}
	}
	if got := n.storageContainers(t); len(got) != 1 {
		t.Fatalf("storage containers before restart: %v", got)
	}

	n.start()
	rc, _ = n.clients()
	pods, err := rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.Items) != 0 {
		t.Fatalf("pods after restart: %v %v", pods, err)
	}
	for _, part := range []string{
		filepath.Join(n.runRoot(), "runc", c.ContainerId),
		filepath.Join(n.runRoot(), "containers", c.ContainerId),
		filepath.Join(n.runRoot(), "bundles", c.ContainerId),
		filepath.Join(n.runRoot(), "sandboxes", podID),
	} {
		if _, err := os.Stat(part); !os.IsNotExist(err) {
			t.Errorf("part %s left after restart: %v", part, err)
		}
	}
	if got := n.storageContainers(t); len(got) != 0 {
		t.Errorf("storage containers left after restart: %v", got)
	}
	assertNodeClean(t, n)
}
