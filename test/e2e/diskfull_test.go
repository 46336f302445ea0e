package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/crivet/crivet/internal/reserve"
	"github.com/crivet/crivet/test/fixtures"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// smallDisk mounts a fresh ext4 file system of sizeMiB on a loop device
// and returns its mount point. It has no blocks reserved for root (-m 0):
// crivet and the filler both run as root and would use them anyway, but
// free space then means the same to df, statfs's f_bavail and the test.
// The cleanup unmounts everything beneath it first (a killed daemon's
// overlay mounts), so it must run after the daemon has stopped.
func smallDisk(t *testing.T, sizeMiB int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "crivet-disk")
	if err != nil {
		t.Fatal(err)
	}
	img, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("truncate", "-s", strconv.Itoa(sizeMiB)+"M", img).CombinedOutput(); err != nil {
		t.Fatalf("truncate: %v\n%s", err, out)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o loop: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		unmountBeneath(t, mnt)
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH) // free the loop device anyway
		}
		os.RemoveAll(dir)
	})
	return mnt
}

// unmountBeneath unmounts every mount below dir, deepest first.
func unmountBeneath(t *testing.T, dir string) {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	var below []string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			below = append(below, f[4])
		}
	}
	sort.Slice(below, func(i, j int) bool { return len(below[i]) > len(below[j]) })
	for _, m := range below {
		if err := unix.Unmount(m, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	}
}

// fill allocates every free block of the file system under dir to one
// file, halving the request on ENOSPC down to a block, and returns it.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var off int64
	for chunk := int64(64 << 20); chunk >= 4096; {
		err := unix.Fallocate(int(f.Fd()), 0, off, chunk)
		switch {
		case err == nil:
			off += chunk
		case errors.Is(err, unix.ENOSPC):
			chunk /= 2
		default:
			t.Fatalf("fallocate %s: %v", path, err)
		}
	}
	if free := freeBytes(t, dir); free != 0 {
		t.Fatalf("%d bytes still free after filling %s", free, dir)
	}
	return path
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
}

// Issue 16, point 10: crivet's root fills to the last byte while a pod
// runs, crivet is killed -9 and restarted on the full disk. It starts,
// answers lists and status, stops and removes (which frees space), and
// refuses a pull with ResourceExhausted; once space is freed a pull
// succeeds without a restart.
func TestFullDiskStartsServesRemovalsAndRecovers(t *testing.T) {
	n := newNode(t)
	disk := smallDisk(t, 300)
	// Registered after smallDisk's cleanup, so it runs before: the daemon
	// and its containers are gone before the file system is unmounted.
	t.Cleanup(func() { n.cleanupPods(); n.stop() })
	n.root = filepath.Join(disk, "crivet")
	ballast := filepath.Join(n.root, reserve.FileName)

	img, _, podID := n.startWithPod(t, "full", 0)
	rc, ic := n.clients()
	ctr, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
		Config: crashContainerConfig("sleeper", img.Ref), SandboxConfig: crashPodConfig(n, "full", false, 0)})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[ctr.ContainerId] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(ballast); err != nil || fi.Size() != reserve.DefaultSize {
		t.Fatalf("no %d-byte reserve in the root after start-up: %v", reserve.DefaultSize, err)
	}

	// A second container, created and not started: kill -9 is going to
	// interrupt its removal.
	doomed, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
		Config: crashContainerConfig("doomed", img.Ref), SandboxConfig: crashPodConfig(n, "full", false, 0)})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[doomed.ContainerId] = true

	filler := fill(t, disk)
	n.kill9()
	// What a kill -9 in the middle of the library's deletion of the doomed
	// container's layer leaves: the layer flagged incomplete (the flag is
	// saved before anything is deleted). Opening the store deletes such a
	// layer and rewrites the layer list, which needs space.
	flagLayerIncomplete(t, filepath.Join(n.root, "storage"), doomed.ContainerId)
	n.start() // fails the test if crivet exits at start-up
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reserve still in place after a start on a full disk: %v", err)
	}
	if !strings.Contains(n.log.String(), "space reserve released") {
		t.Errorf("release of the reserve not logged:\n%s", n.log)
	}

	rc, ic = n.clients()
	pods, err := rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("ListPodSandbox on a full disk: %v %v", pods, err)
	}
	ctrs, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{Id: ctr.ContainerId}})
	if err != nil || len(ctrs.Containers) != 1 || ctrs.Containers[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("ListContainers on a full disk: %v %v", ctrs, err)
	}
	if st, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: doomed.ContainerId}); err != nil {
		t.Fatalf("ContainerStatus of the half-removed container on a full disk: %v %v", st, err)
	}
	if st, err := ic.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}}); err != nil || st.Image == nil {
		t.Fatalf("ImageStatus on a full disk: %v %v", st, err)
	}
	if _, err := rc.Status(ctx(t), &runtimeapi.StatusRequest{}); err != nil {
		t.Fatalf("Status on a full disk: %v", err)
	}

	// A small image: it would fit in the released reserve, which is kept
	// for removals instead.
	other := fixtures.PushImage(t, n.reg.Ref("other:1"), 1<<20)
	_, err = ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: other.Ref}})
	wantCode(t, "pull on a full disk", err, codes.ResourceExhausted)
	_, err = rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
		Config: crashContainerConfig("second", img.Ref), SandboxConfig: crashPodConfig(n, "full", false, 0)})
	wantCode(t, "create on a full disk", err, codes.ResourceExhausted)

	if _, err := rc.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: ctr.ContainerId, Timeout: 1}); err != nil {
		t.Fatalf("StopContainer on a full disk: %v\n%s", err, n.log)
	}
	if _, err := rc.RemoveContainer(ctx(t), &runtimeapi.RemoveContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("RemoveContainer on a full disk: %v\n%s", err, n.log)
	}
	if _, err := rc.RemoveContainer(ctx(t), &runtimeapi.RemoveContainerRequest{ContainerId: doomed.ContainerId}); err != nil {
		t.Fatalf("RemoveContainer of the half-removed container on a full disk: %v\n%s", err, n.log)
	}
	if _, err := rc.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox on a full disk: %v\n%s", err, n.log)
	}
	if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox on a full disk: %v\n%s", err, n.log)
	}
	if ctrs, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{}); err != nil || len(ctrs.Containers) != 0 {
		t.Fatalf("containers after removal: %v %v", ctrs, err)
	}
	if pods, err := rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{}); err != nil || len(pods.Items) != 0 {
		t.Fatalf("pods after removal: %v %v", pods, err)
	}

	// Space returns: the same daemon serves everything again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: other.Ref}}); err != nil {
		t.Fatalf("pull once space returned: %v\n%s", err, n.log)
	}
	if fi, err := os.Stat(ballast); err != nil || fi.Size() != reserve.DefaultSize {
		t.Fatalf("reserve not recreated once space returned: %v", err)
	}
	pod, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: crashPodConfig(n, "again", false, 0)})
	if err != nil {
		t.Fatalf("RunPodSandbox once space returned: %v", err)
	}
	n.ids[pod.PodSandboxId] = true
	c2, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId,
		Config: crashContainerConfig("back", img.Ref), SandboxConfig: crashPodConfig(n, "again", false, 0)})
	if err != nil {
		t.Fatalf("CreateContainer once space returned: %v", err)
	}
	n.ids[c2.ContainerId] = true
}

// flagLayerIncomplete marks the layer of storage container id incomplete
// in the store's layer lists under graphRoot, rewriting the file in place
// (its blocks are reused: this works on a full disk).
func flagLayerIncomplete(t *testing.T, graphRoot, id string) {
	t.Helper()
	layer := ""
	for _, f := range []string{"containers.json", "volatile-containers.json"} {
		b, err := os.ReadFile(filepath.Join(graphRoot, "overlay-containers", f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var cs []struct{ ID, Layer string }
		if err := json.Unmarshal(b, &cs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range cs {
			if c.ID == id {
				layer = c.Layer
			}
		}
	}
	if layer == "" {
		t.Fatalf("no storage container %s", id)
	}
	for _, f := range []string{"layers.json", "volatile-layers.json"} {
		path := filepath.Join(graphRoot, "overlay-layers", f)
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var ls []map[string]any
		if err := json.Unmarshal(b, &ls); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, l := range ls {
			if l["id"] != layer {
				continue
			}
			flags, _ := l["flags"].(map[string]any)
			if flags == nil {
				flags = map[string]any{}
			}
			flags["incomplete"] = true
			l["flags"] = flags
			out, _ := json.Marshal(ls)
			if err := os.WriteFile(path, out, 0o600); err != nil {
				t.Fatalf("flag layer %s incomplete: %v", layer, err)
			}
			return
		}
	}
	t.Fatalf("layer %s of container %s not in the layer lists", layer, id)
}

// The disk fills while crivet runs with its reserve in place: the removal
// kubelet sends hits ENOSPC, the reserve is released and the removal is
// run again at once, so it succeeds; a pull is then refused until space
// is freed, and succeeds after, without a restart.
func TestDiskFillingUnderARunningDaemonStillRemoves(t *testing.T) {
	n := newNode(t)
	disk := smallDisk(t, 300)
	t.Cleanup(func() { n.cleanupPods(); n.stop() })
	n.root = filepath.Join(disk, "crivet")
	ballast := filepath.Join(n.root, reserve.FileName)

	img, podCfg, podID := n.startWithPod(t, "filling", 0)
	rc, ic := n.clients()
	ctr, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
		Config: crashContainerConfig("created", img.Ref), SandboxConfig: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[ctr.ContainerId] = true

	filler := fill(t, disk)
	if _, err := rc.RemoveContainer(ctx(t), &runtimeapi.RemoveContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("RemoveContainer on a disk that filled: %v\n%s", err, n.log)
	}
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reserve not released by a removal that hit ENOSPC: %v\n%s", err, n.log)
	}
	if ctrs, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{}); err != nil || len(ctrs.Containers) != 0 {
		t.Fatalf("containers after removal: %v %v", ctrs, err)
	}
	other := fixtures.PushImage(t, n.reg.Ref("other:1"), 1<<20)
	_, err = ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: other.Ref}})
	wantCode(t, "pull on a full disk", err, codes.ResourceExhausted)
	if _, err := rc.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox on a full disk: %v\n%s", err, n.log)
	}
	if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox on a full disk: %v\n%s", err, n.log)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: other.Ref}}); err != nil {
		t.Fatalf("pull once space returned: %v\n%s", err, n.log)
	}
	if fi, err := os.Stat(ballast); err != nil || fi.Size() != reserve.DefaultSize {
		t.Fatalf("reserve not recreated once space returned: %v", err)
	}
}
