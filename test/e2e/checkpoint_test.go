package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/checkpoint"
	"github.com/crivet/crivet/test/fixtures"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crierrors "k8s.io/cri-api/pkg/errors"
)

// criuCheck runs `criu check`: "" when CRIU can checkpoint on this host,
// else why not (its own words).
func criuCheck() string {
	out, err := exec.Command("criu", "check").CombinedOutput()
	if err != nil {
		return strings.TrimSpace("criu check: " + err.Error() + ": " + string(out))
	}
	return ""
}

// podIn is a pod of its own PID namespace in namespace ns.
func podIn(t *testing.T, n *node, rc runtimeapi.RuntimeServiceClient, name, ns string) (*runtimeapi.PodSandboxConfig, string) {
	t.Helper()
	cfg := crashPodConfig(n, name, false, 0)
	cfg.Metadata.Namespace = ns
	pod, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[pod.PodSandboxId] = true
	return cfg, pod.PodSandboxId
}

// handMadeArchive is a checkpoint archive recording img (by name and ID)
// whose CRIU images are not a real dump: enough for everything crivet
// decides before runc restore runs.
func handMadeArchive(t *testing.T, dir, name, id string) string {
	t.Helper()
	images := filepath.Join(dir, "images-"+filepath.Base(t.Name()))
	if err := os.MkdirAll(images, 0o700); err != nil {
		t.Fatal(err)
	}
	fixtures.WriteFile(t, filepath.Join(images, "inventory.img"), "not a CRIU image")
	path := filepath.Join(dir, "hand-made-checkpoint.tar")
	err := checkpoint.Write(path, checkpoint.Contents{
		Config: checkpoint.Config{ID: "0123", Name: "counter", RootfsImage: id, RootfsImageRef: id, RootfsImageName: name, CheckpointedAt: time.Now()},
		Spec:   &specs.Spec{Version: specs.Version, Annotations: map[string]string{checkpoint.AnnotationImageUser: name, checkpoint.AnnotationImageID: id}},
		Images: images,
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// A checkpoint brings its image's code into the pod it is restored in:
// the restore is admitted exactly as a create of that image in that
// pod's namespace. Where the namespace's policy refuses the image, the
// restore is SignatureValidationFailed and nothing is made; where it
// admits it, the restore goes on to runc restore (which refuses these
// hand-made CRIU images) and a failed restore leaves nothing either.
// Needs no working CRIU: every decision comes before it.
func TestRestoreIsAdmittedUnderTheTargetNamespacesPolicy(t *testing.T) {
	n := newNode(t)
	img, _, _ := n.startWithPod(t, "ckpt-src", 0)
	n.setNamespace("locked", `{"default":[{"type":"reject"}]}`)
	rc, ic := n.clients()
	st, err := ic.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}})
	if err != nil || st.Image == nil {
		t.Fatalf("image status: %v %v", err, st)
	}
	archive := handMadeArchive(t, n.dir, img.Ref, st.Image.Id)

	lockedCfg, lockedPod := podIn(t, n, rc, "restore-locked", "locked")
	cfg := crashContainerConfig("counter", archive)
	_, err = rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: lockedPod, Config: cfg, SandboxConfig: lockedCfg})
	if err == nil || !strings.HasPrefix(status.Convert(err).Message(), crierrors.ErrSignatureValidationFailed.Error()) {
		t.Fatalf("restore into a namespace that refuses %s: %v, want SignatureValidationFailed", img.Ref, err)
	}
	list, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.Containers) != 0 {
		t.Fatalf("containers after the refusal: %v %v", err, list.GetContainers())
	}

	openCfg, openPod := podIn(t, n, rc, "restore-open", "default")
	_, err = rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: openPod, Config: cfg, SandboxConfig: openCfg})
	if err == nil {
		t.Fatal("a restore from hand-made CRIU images succeeded")
	}
	msg := status.Convert(err).Message()
	if strings.Contains(msg, crierrors.ErrSignatureValidationFailed.Error()) || !strings.Contains(msg, "runc restore") {
		t.Fatalf("restore in an admitting namespace: %v, want it admitted and then refused by runc restore", err)
	}
	list, err = rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.Containers) != 0 {
		t.Fatalf("containers after the failed restore: %v %v", err, list.GetContainers())
	}
	if left, _ := os.ReadDir(filepath.Join(n.dir, "run", "checkpoints")); len(left) != 0 {
		t.Errorf("restore work directories left: %v", left)
	}
	// The name the failed restore used is free again.
	c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: openPod, Config: crashContainerConfig("counter", img.Ref), SandboxConfig: openCfg})
	if err != nil {
		t.Fatalf("create after the failed restore: %v", err)
	}
	n.ids[c.ContainerId] = true
}

// counterConfig counts once a second into /count, from its own memory:
// a restored process goes on from where it was, a new one from 1.
func counterConfig(name, image string) *runtimeapi.ContainerConfig {
	cfg := crashContainerConfig(name, image)
	cfg.Command = []string{"sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 1; done"}
	return cfg
}

func readCount(t *testing.T, rc runtimeapi.RuntimeServiceClient, id string) int {
	t.Helper()
	out, err := rc.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/count"}, Timeout: 10})
	if err != nil || out.ExitCode != 0 {
		return 0
	}
	v, _ := strconv.Atoi(strings.TrimSpace(string(out.Stdout)))
	return v
}

// waitCount polls until the counter reaches at least min (a condition,
// not a time: the deadline only bounds a broken run).
func waitCount(t *testing.T, rc runtimeapi.RuntimeServiceClient, id string, min int) int {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if v := readCount(t, rc, id); v >= min {
			return v
		} else if time.Now().After(deadline) {
			t.Fatalf("counter of %s stuck at %d, want >= %d", id, v, min)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The case: checkpoint a running counter with real runc and CRIU,
// restore it into a new pod, see the counter continue. Without a CRIU
// that works on this kernel, CheckpointContainer must fail, say why,
// leave the container running and write no archive.
func TestCheckpointRunningCounterAndRestoreInNewPod(t *testing.T) {
	n := newNode(t)
	img, podCfg, podID := n.startWithPod(t, "ckpt", 0)
	rc, _ := n.clients()
	c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: counterConfig("counter", img.Ref), SandboxConfig: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[c.ContainerId] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	waitCount(t, rc, c.ContainerId, 3)
	location := filepath.Join(n.dir, "counter-checkpoint.tar")
	_, err = rc.CheckpointContainer(ctx(t), &runtimeapi.CheckpointContainerRequest{ContainerId: c.ContainerId, Location: location})
	if why := criuCheck(); why != "" {
		if err == nil {
			t.Fatalf("checkpoint succeeded though %s", why)
		}
		if _, serr := os.Stat(location); !os.IsNotExist(serr) {
			t.Errorf("archive at %s after a failed checkpoint: %v", location, serr)
		}
		if left, _ := os.ReadDir(filepath.Join(n.dir, "run", "checkpoints")); len(left) != 0 {
			t.Errorf("checkpoint work directories left: %v", left)
		}
		before := readCount(t, rc, c.ContainerId)
		waitCount(t, rc, c.ContainerId, before+1)
		t.Skipf("CRIU cannot checkpoint on this host (%s); CheckpointContainer failed as it must: %v", why, err)
	}
	if err != nil {
		t.Fatalf("checkpoint: %v\n%s", err, n.log)
	}
	a, err := checkpoint.Open(location)
	if err != nil {
		t.Fatalf("the archive written: %v", err)
	}
	if a.ImageName() != img.Ref {
		t.Errorf("archive records image %q, want %q", a.ImageName(), img.Ref)
	}
	at := readCount(t, rc, c.ContainerId)
	// A new pod; the old container goes first, so nothing but the
	// checkpoint carries the count.
	if _, err := rc.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	newCfg, newPod := podIn(t, n, rc, "ckpt-restored", "default")
	r, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: newPod, Config: crashContainerConfig("counter", location), SandboxConfig: newCfg})
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, n.log)
	}
	n.ids[r.ContainerId] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		t.Fatal(err)
	}
	first := readCount(t, rc, r.ContainerId)
	if first < at-1 || first == 0 {
		t.Fatalf("restored counter reads %d, checkpointed at about %d: it did not continue", first, at)
	}
	// The restored container's own command is `sleep`: only the
	// restored counter process can move the count on, and from where the
	// checkpoint left it, not from 1.
	if next := waitCount(t, rc, r.ContainerId, first+1); next <= at {
		t.Fatalf("restored counter at %d, not past %d", next, at)
	}
	rs, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: r.ContainerId})
	if err != nil || rs.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("restored container status: %v %v", err, rs.GetStatus())
	}
}

// An OCI image built from a checkpoint archive (checkpointctl build: the
// archive's entries at the root, a checkpoint annotation on the manifest)
// restores the same way. Two images then put code in the pod, and the
// namespace's policy must admit both: the checkpoint image as any image,
// and the image the checkpoint records. A namespace that admits the
// checkpoint image's repository but not the recorded image refuses the
// restore with SignatureValidationFailed naming the recorded image; one
// that admits both goes on to runc restore (which refuses these
// hand-made CRIU images). Nothing is left either way.
func TestRestoreFromCheckpointImageAdmitsBothImages(t *testing.T) {
	n := newNode(t)
	img, _, _ := n.startWithPod(t, "ckpt-img-src", 0)
	rc, ic := n.clients()
	st, err := ic.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}})
	if err != nil || st.Image == nil {
		t.Fatalf("image status: %v %v", err, st)
	}
	cfgDump := fmt.Sprintf(`{"id":"0123","name":"counter","rootfsImageName":%q,"rootfsImageRef":%q}`, img.Ref, st.Image.Id)
	ckptRef := n.reg.Ref("ckpt/counter:1")
	fixtures.PushCheckpointImage(t, ckptRef, map[string]string{
		"config.dump": cfgDump, "spec.dump": `{"ociVersion":"1.2.0"}`, "checkpoint/inventory.img": "not a CRIU image",
	}, map[string]string{checkpoint.AnnotationName: "counter"})
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ckptRef}}); err != nil {
		t.Fatal(err)
	}
	// "ckptonly" admits the checkpoint image's repository alone.
	n.setNamespace("ckptonly", fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{%q:[{"type":"insecureAcceptAnything"}]}}}`, n.reg.Ref("ckpt/counter")))

	lockedCfg, lockedPod := podIn(t, n, rc, "ckpt-img-locked", "ckptonly")
	cfg := crashContainerConfig("counter", ckptRef)
	_, err = rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: lockedPod, Config: cfg, SandboxConfig: lockedCfg})
	msg := status.Convert(err).Message()
	if err == nil || !strings.HasPrefix(msg, crierrors.ErrSignatureValidationFailed.Error()) || !strings.Contains(msg, img.Ref) {
		t.Fatalf("restore of a checkpoint image whose recorded image %s the namespace refuses: %v, want SignatureValidationFailed naming it", img.Ref, err)
	}

	openCfg, openPod := podIn(t, n, rc, "ckpt-img-open", "default")
	_, err = rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: openPod, Config: cfg, SandboxConfig: openCfg})
	msg = status.Convert(err).Message()
	if err == nil || strings.Contains(msg, crierrors.ErrSignatureValidationFailed.Error()) || !strings.Contains(msg, "runc restore") {
		t.Fatalf("restore of a checkpoint image in an admitting namespace: %v, want it admitted and then refused by runc restore", err)
	}
	list, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.Containers) != 0 {
		t.Fatalf("containers after the failed restores: %v %v", err, list.GetContainers())
	}
	// The checkpoint image was mounted only for the create: it can go.
	if _, err := ic.RemoveImage(ctx(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ckptRef}}); err != nil {
		t.Errorf("remove the checkpoint image after the restores: %v", err)
	}
}
