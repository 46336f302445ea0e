package e2e

import (
	"archive/tar"
	"fmt"
	"io"
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
	"google.golang.org/grpc/codes"
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

// counterConfig counts once a second into /count and onto stdout, from
// its own memory: a restored process goes on from where it was, a new
// one from 1.
func counterConfig(name, image string) *runtimeapi.ContainerConfig {
	cfg := crashContainerConfig(name, image)
	cfg.Command = []string{"sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /count; echo count $i; sleep 1; done"}
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

// loggedCounts are the counts a counter printed into its CRI log file.
func loggedCounts(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []int
	for _, line := range strings.Split(string(data), "\n") {
		// <time> stdout F count <n>
		f := strings.Fields(line)
		if len(f) == 5 && f[1] == "stdout" && f[3] == "count" {
			if v, err := strconv.Atoi(f[4]); err == nil {
				out = append(out, v)
			}
		}
	}
	return out
}

// needCRIU skips a test that needs a working CRIU where there is none.
func needCRIU(t *testing.T) {
	t.Helper()
	if why := criuCheck(); why != "" {
		t.Skipf("needs a CRIU that works on this host (make install-criu): %s", why)
	}
}

// checkpointedCounter starts a counter in the pod podID on n,
// checkpoints it to location with real runc and CRIU, then stops it, so
// that nothing but the checkpoint carries its count on. It returns the
// count the checkpoint holds at the least. Where criu check fails it
// asserts that CheckpointContainer failed as it must and skips.
func checkpointedCounter(t *testing.T, n *node, img fixtures.Image, podCfg *runtimeapi.PodSandboxConfig, podID, location string) int {
	t.Helper()
	rc, _ := n.clients()
	c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: counterConfig("counter", img.Ref), SandboxConfig: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[c.ContainerId] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	at := waitCount(t, rc, c.ContainerId, 3)
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
		t.Skipf("CRIU cannot checkpoint on this host (%s; make install-criu); CheckpointContainer failed as it must: %v", why, err)
	}
	if err != nil {
		t.Fatalf("checkpoint: %v\n%s", err, n.log)
	}
	// Left running: a checkpoint is a copy.
	waitCount(t, rc, c.ContainerId, readCount(t, rc, c.ContainerId)+1)
	if _, err := rc.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: c.ContainerId, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(filepath.Join(n.dir, "run", "checkpoints")); len(left) != 0 {
		t.Errorf("checkpoint work directories left: %v", left)
	}
	return at
}

// restoredCounter creates (restores) a container from image (an archive
// path or a checkpoint image) in a new pod, starts it and checks that
// the counter goes on from the checkpoint, in the file and on stdout
// (CRIU gives the restored process the new container's stdio): it must
// pass at+1 without ever counting 1, 2, 3 again. The restored container's
// own command is `sleep`: only the restored process can count.
func restoredCounter(t *testing.T, n *node, pod, image string, at int) string {
	t.Helper()
	rc, _ := n.clients()
	newCfg, newPod := podIn(t, n, rc, pod, "default")
	r, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: newPod, Config: crashContainerConfig("counter", image), SandboxConfig: newCfg})
	if err != nil {
		t.Fatalf("restore from %s: %v\n%s", image, err, n.log)
	}
	n.ids[r.ContainerId] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		t.Fatal(err)
	}
	first := readCount(t, rc, r.ContainerId)
	if first < at {
		t.Fatalf("restored counter reads %d, checkpointed at %d or later: it did not continue", first, at)
	}
	next := waitCount(t, rc, r.ContainerId, first+2)
	rs, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: r.ContainerId})
	if err != nil || rs.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("restored container status: %v %v", err, rs.GetStatus())
	}
	// The log lags the file (the monitor copies it): wait for next-1.
	deadline := time.Now().Add(90 * time.Second)
	for {
		logged := loggedCounts(t, rs.Status.LogPath)
		if len(logged) > 0 && logged[0] < at {
			t.Fatalf("restored container's log %s starts at %d, before the checkpoint's %d: %v", rs.Status.LogPath, logged[0], at, logged)
		}
		if len(logged) > 0 && logged[len(logged)-1] >= next-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restored container's log %s holds counts %v, want them to reach %d", rs.Status.LogPath, logged, next-1)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return r.ContainerId
}

// restoreRuncs are the runcs a checkpoint is made and restored with:
// runc on PATH (Debian's 1.1.5) and bin/runc (v1.5.3, `make runc`)
// where it was built. Both find criu on PATH.
func restoreRuncs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{"path": "runc"}
	if p, err := filepath.Abs("../../bin/runc"); err == nil {
		if _, err := os.Stat(p); err == nil {
			out["bin"] = p
		} else {
			t.Logf("no %s (make runc): only runc on PATH is tried", p)
		}
	}
	return out
}

// The case: checkpoint a running counter with real runc and CRIU,
// restore it from the archive into a new pod, see the counter continue,
// on each runc. Without a CRIU that works on this kernel,
// CheckpointContainer must fail, say why, leave the container running and
// write no archive.
func TestCheckpointRunningCounterAndRestoreInNewPod(t *testing.T) {
	for name, runc := range restoreRuncs(t) {
		t.Run(name, func(t *testing.T) {
			n := newNode(t)
			n.toml = fmt.Sprintf("runtime = %q\n", runc)
			img, podCfg, podID := n.startWithPod(t, "ckpt", 0)
			location := filepath.Join(n.dir, "counter-checkpoint.tar")
			at := checkpointedCounter(t, n, img, podCfg, podID, location)
			a, err := checkpoint.Open(location)
			if err != nil {
				t.Fatalf("the archive written: %v", err)
			}
			if a.ImageName() != img.Ref {
				t.Errorf("archive records image %q, want %q", a.ImageName(), img.Ref)
			}
			restoredCounter(t, n, "ckpt-restored", location, at)
			// The archive is a copy to restore from again, elsewhere.
			restoredCounter(t, n, "ckpt-restored-again", location, at)
		})
	}
}

// A checkpoint archive made into an OCI image (as checkpointctl build
// does: the archive's entries at the image's root, a checkpoint
// annotation on the manifest), pushed and pulled like any image, restores
// the counter in a new pod, and it goes on counting.
func TestCheckpointImageRestoresTheCounter(t *testing.T) {
	needCRIU(t)
	n := newNode(t)
	img, podCfg, podID := n.startWithPod(t, "ckpt", 0)
	location := filepath.Join(n.dir, "counter-checkpoint.tar")
	at := checkpointedCounter(t, n, img, podCfg, podID, location)
	files := map[string]string{}
	f, err := os.Open(location)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = string(data)
		}
	}
	ckptRef := n.reg.Ref("ckpt/counter:real")
	fixtures.PushCheckpointImage(t, ckptRef, files, map[string]string{checkpoint.AnnotationName: "counter"})
	_, ic := n.clients()
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ckptRef}}); err != nil {
		t.Fatal(err)
	}
	restoredCounter(t, n, "ckpt-img-restored", ckptRef, at)
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

// Real CRIU refusing a restore (an archive whose process tree image is
// garbage): CreateContainer fails with runc's and CRIU's own words (the
// work directory holding restore.log is gone by then), and leaves no
// container, runc state or work directory; the name is free, and the
// intact archive restores under it. A container that is not running
// cannot be checkpointed (FailedPrecondition) and gets no archive.
func TestRestoreFromCorruptCheckpointFailsWithCRIUsWords(t *testing.T) {
	needCRIU(t)
	n := newNode(t)
	img, podCfg, podID := n.startWithPod(t, "ckpt", 0)
	location := filepath.Join(n.dir, "counter-checkpoint.tar")
	at := checkpointedCounter(t, n, img, podCfg, podID, location)
	rc, _ := n.clients()

	list, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("the stopped counter: %v %v", err, list.GetContainers())
	}
	stopped := filepath.Join(n.dir, "stopped.tar")
	_, err = rc.CheckpointContainer(ctx(t), &runtimeapi.CheckpointContainerRequest{ContainerId: list.Containers[0].Id, Location: stopped})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("checkpoint of an exited container: %v, want FailedPrecondition", err)
	}
	if _, err := os.Stat(stopped); !os.IsNotExist(err) {
		t.Errorf("archive of an exited container: %v", err)
	}

	// The same archive with its pstree.img replaced.
	dir := filepath.Join(n.dir, "unpacked")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", location, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	fixtures.WriteFile(t, filepath.Join(dir, checkpoint.ImagesDir, "pstree.img"), "not a process tree")
	bad := filepath.Join(n.dir, "corrupt-checkpoint.tar")
	if out, err := exec.Command("tar", "-cf", bad, "-C", dir, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	newCfg, newPod := podIn(t, n, rc, "ckpt-corrupt", "default")
	_, err = rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: newPod, Config: crashContainerConfig("counter", bad), SandboxConfig: newCfg})
	msg := status.Convert(err).Message()
	if err == nil || !strings.Contains(msg, "runc restore") || !strings.Contains(msg, "CRIU says:") || !strings.Contains(msg, "Error (criu/") {
		t.Fatalf("restore of a corrupt checkpoint: %v, want runc's and CRIU's errors", err)
	}
	t.Logf("restore of a corrupt checkpoint: %s", msg)
	list, err = rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: newPod}})
	if err != nil || len(list.Containers) != 0 {
		t.Fatalf("containers after the failed restore: %v %v", err, list.GetContainers())
	}
	if left, _ := os.ReadDir(filepath.Join(n.dir, "run", "checkpoints")); len(left) != 0 {
		t.Errorf("restore work directories left: %v", left)
	}
	// runc holds no container crivet does not know.
	known := map[string]bool{}
	all, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all.Containers {
		known[c.Id] = true
	}
	pods, err := rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		known[p.Id] = true
	}
	out, err := exec.Command("runc", "--root", filepath.Join(n.runRoot(), "runc"), "list", "-q").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range strings.Fields(string(out)) {
		if !known[id] {
			t.Errorf("runc still has %s after the failed restore", id)
		}
	}
	r, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: newPod, Config: crashContainerConfig("counter", location), SandboxConfig: newCfg})
	if err != nil {
		t.Fatalf("restore of the intact archive under the freed name: %v", err)
	}
	n.ids[r.ContainerId] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		t.Fatal(err)
	}
	if v := waitCount(t, rc, r.ContainerId, at+1); v < at {
		t.Fatalf("restored counter at %d, before %d", v, at)
	}
}

// A container with a terminal (the monitor holds its console) is
// checkpointed and restored too: runc hands CRIU the console, and the
// restored counter goes on in the new container's terminal and log.
func TestCheckpointAndRestoreTTYCounter(t *testing.T) {
	needCRIU(t)
	n := newNode(t)
	img, podCfg, podID := n.startWithPod(t, "ckpt", 0)
	rc, _ := n.clients()
	cfg := counterConfig("counter", img.Ref)
	cfg.Tty = true
	c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[c.ContainerId] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	at := waitCount(t, rc, c.ContainerId, 3)
	location := filepath.Join(n.dir, "tty-checkpoint.tar")
	if _, err := rc.CheckpointContainer(ctx(t), &runtimeapi.CheckpointContainerRequest{ContainerId: c.ContainerId, Location: location}); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if _, err := rc.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: c.ContainerId, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	restored := crashContainerConfig("counter", location)
	restored.Tty = true
	newCfg, newPod := podIn(t, n, rc, "ckpt-tty-restored", "default")
	r, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: newPod, Config: restored, SandboxConfig: newCfg})
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, n.log)
	}
	n.ids[r.ContainerId] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		t.Fatal(err)
	}
	next := waitCount(t, rc, r.ContainerId, at+2)
	rs, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: r.ContainerId})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		logged := loggedCounts(t, rs.Status.LogPath)
		if len(logged) > 0 && logged[0] < at {
			t.Fatalf("restored terminal's log starts at %d, before %d: %v", logged[0], at, logged)
		}
		if len(logged) > 0 && logged[len(logged)-1] >= next-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restored terminal's log holds %v, want counts up to %d", logged, next-1)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
