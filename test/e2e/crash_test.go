package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
	"go.podman.io/storage"
	storagetypes "go.podman.io/storage/types"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (n *node) runRoot() string { return filepath.Join(n.dir, "run") }

// storageContainers lists the container layers in the node's store, read
// from storage's own records (crivet's container layers are volatile: in
// volatile-containers.json) so the daemon's store is not disturbed.
func (n *node) storageContainers(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, name := range []string{"containers.json", "volatile-containers.json"} {
		data, err := os.ReadFile(filepath.Join(n.root, "storage", "overlay-containers", name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var cs []struct{ ID string }
		if err := json.Unmarshal(data, &cs); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// withStore opens the node's store while the daemon is down.
func (n *node) withStore(t *testing.T, f func(storage.Store)) {
	t.Helper()
	store, err := storage.GetStore(storagetypes.StoreOptions{
		GraphRoot: filepath.Join(n.root, "storage"), RunRoot: filepath.Join(n.runRoot(), "storage"), GraphDriverName: "overlay",
	})
	if err != nil {
		t.Fatal(err)
	}
	f(store)
	// Not forced: that would unmount every container's root filesystem.
	if _, err := store.Shutdown(false); err != nil && !errors.Is(err, storage.ErrLayerUsedByContainer) {
		t.Fatal(err)
	}
}

// layerMountCount reads how many mounts storage counts for a layer.
func (n *node) layerMountCount(t *testing.T, layer string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(n.runRoot(), "storage", "overlay-layers", "mountpoints.json"))
	if err != nil {
		t.Fatal(err)
	}
	var mps []struct {
		ID    string
		Count int
	}
	if err := json.Unmarshal(data, &mps); err != nil {
		t.Fatalf("mountpoints.json: %v", err)
	}
	for _, m := range mps {
		if m.ID == layer {
			return m.Count
		}
	}
	return 0
}

var (
	hexID       = regexp.MustCompile(`[0-9a-f]{64}`)
	recoveryMsg = regexp.MustCompile(`"msg":"recovery: ([^"]*)"`)
)

// learnIDs adds every ID the daemon logged (pods and containers whose
// creation a kill interrupted included) to the IDs the leftover checks
// look for.
func (n *node) learnIDs() {
	if n.log == nil {
		return
	}
	for _, id := range hexID.FindAllString(n.log.String(), -1) {
		n.ids[id] = true
	}
}

// assertNodeClean is assertNothingLeft plus what only a crash can leave:
// runc state, monitor directories, bundles, pod directories, storage
// containers, IPAM leases, portmap rules and container processes.
func assertNodeClean(t *testing.T, n *node) {
	t.Helper()
	n.learnIDs()
	assertNothingLeft(t, n)
	for _, d := range []string{"runc", "containers", "bundles", "sandboxes"} {
		ents, _ := os.ReadDir(filepath.Join(n.runRoot(), d))
		for _, e := range ents {
			t.Errorf("%s left: %s", d, e.Name())
		}
	}
	if ids := n.storageContainers(t); len(ids) != 0 {
		t.Errorf("%d storage containers left: %v", len(ids), ids)
	}
	leases, _ := os.ReadDir(filepath.Join(n.dir, "ipam", "crivet-e2e"))
	for _, e := range leases {
		if e.Name() != "lock" && !strings.HasPrefix(e.Name(), "last_reserved_ip") {
			b, _ := os.ReadFile(filepath.Join(n.dir, "ipam", "crivet-e2e", e.Name()))
			t.Errorf("IPAM lease left: %s (%s)", e.Name(), strings.TrimSpace(string(b)))
		}
	}
	if out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			for _, id := range hexID.FindAllString(l, -1) {
				if n.ids[id] {
					t.Errorf("portmap rule left: %s", l)
				}
			}
		}
	}
	// A container's processes have their root in its storage mount.
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		if root, err := os.Readlink("/proc/" + p.Name() + "/root"); err == nil && strings.HasPrefix(root, n.dir) {
			cmdline, _ := os.ReadFile("/proc/" + p.Name() + "/cmdline")
			t.Errorf("container process left: %s %q (root %s)", p.Name(), cmdline, root)
		}
	}
}

// removeAllOnce lists everything (each status must answer), then removes
// every container and then every pod with ONE call each, as kubelet would.
func removeAllOnce(t *testing.T, n *node, rc runtimeapi.RuntimeServiceClient) {
	t.Helper()
	pods, err := rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	ctrs, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	for _, c := range ctrs.Containers {
		n.ids[c.Id] = true
		if _, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: c.Id}); err != nil {
			t.Errorf("ContainerStatus %s: %v", c.Id, err)
		}
		if _, err := rc.RemoveContainer(ctx(t), &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			t.Errorf("RemoveContainer %s (%s): %v", c.Id, c.State, err)
		}
	}
	for _, p := range pods.Items {
		n.ids[p.Id] = true
		if _, err := rc.PodSandboxStatus(ctx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("PodSandboxStatus %s: %v", p.Id, err)
		}
		if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("RemovePodSandbox %s: %v", p.Id, err)
		}
	}
	if left, _ := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{}); len(left.GetContainers()) != 0 {
		t.Errorf("containers listed after removal: %v", left.Containers)
	}
	if left, _ := rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{}); len(left.GetItems()) != 0 {
		t.Errorf("pods listed after removal: %v", left.Items)
	}
}

func crashPodConfig(n *node, name string, sharedPID bool, hostPort int32) *runtimeapi.PodSandboxConfig {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(n.dir, "logs", name),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{}}},
	}
	// CRI's zero value is POD: a PID namespace shared through an infra process.
	if !sharedPID {
		cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_CONTAINER
	}
	if hostPort > 0 {
		cfg.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: hostPort}}
	}
	return cfg
}

// startWithPod starts the node with a busybox image pulled and one running
// pod (its own PID namespace, hostPort on 127.0.0.1) recorded in n.ids.
func (n *node) startWithPod(t *testing.T, name string, hostPort int32) (fixtures.Image, *runtimeapi.PodSandboxConfig, string) {
	t.Helper()
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{})
	n.start()
	rc, ic := n.clients()
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}}); err != nil {
		t.Fatal(err)
	}
	podCfg := crashPodConfig(n, name, false, hostPort)
	pod, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[pod.PodSandboxId] = true
	return img, podCfg, pod.PodSandboxId
}

func crashContainerConfig(name, image string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: image},
		Command:  []string{"sleep", "3600"},
		LogPath:  name + ".log",
		// Its own PID namespace, as kubelet asks unless the pod shares one.
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
	}
}

// The case, made deterministic: a container whose storage
// container, runc state, monitor and bundle are gone (its state is then
// Unknown), another whose storage container alone is gone, and a pod whose
// network namespace pin is gone (its IPAM lease and port mapping are not)
// are each removed by one RemoveContainer / RemovePodSandbox, and nothing
// is left on the node.
func TestRemoveSucceedsWhenPartsAreAlreadyGone(t *testing.T) {
	n := newNode(t)
	img, podCfg, podID := n.startWithPod(t, "gone", 38091)
	rc, _ := n.clients()
	var ids []string
	for _, name := range []string{"vanished", "no-storage"} {
		c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: crashContainerConfig(name, img.Ref), SandboxConfig: podCfg})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatal(err)
		}
		n.ids[c.ContainerId] = true
		ids = append(ids, c.ContainerId)
	}
	vanished, noStorage := ids[0], ids[1]
	n.kill9()

	// Take the parts away behind crivet's back, with the tools that own them.
	runc := func(args ...string) {
		if out, err := exec.Command("runc", append([]string{"--root", filepath.Join(n.runRoot(), "runc")}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("runc %v: %v %s", args, err, out)
		}
	}
	runc("delete", "--force", vanished)
	deadline := time.Now().Add(10 * time.Second)
	for monitorAlive(filepath.Join(n.runRoot(), "containers", vanished)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.RemoveAll(filepath.Join(n.runRoot(), "containers", vanished)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(n.runRoot(), "bundles", vanished)); err != nil {
		t.Fatal(err)
	}
	n.withStore(t, func(s storage.Store) {
		for _, id := range ids {
			if err := s.DeleteContainer(id); err != nil {
				t.Fatalf("delete storage container %s: %v", id, err)
			}
		}
	})
	netns := filepath.Join(n.runRoot(), "sandboxes", podID, "ns", "net")
	if err := unix.Unmount(netns, unix.MNT_DETACH); err != nil {
		t.Fatalf("unpin %s: %v", netns, err)
	}
	if got := n.storageContainers(t); len(got) != 0 {
		t.Fatalf("storage containers still there: %v", got)
	}

	n.start()
	rc, _ = n.clients()
	st, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: vanished})
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_UNKNOWN {
		t.Fatalf("status of the container whose parts are gone: %v %v", st.GetStatus().GetState(), err)
	}
	if _, err := rc.RemoveContainer(ctx(t), &runtimeapi.RemoveContainerRequest{ContainerId: vanished}); err != nil {
		t.Fatalf("RemoveContainer of a container whose parts are gone: %v", err)
	}
	// The other container goes with its pod.
	if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	for _, id := range []string{vanished, noStorage} {
		if _, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: id}); status.Code(err) != codes.NotFound {
			t.Errorf("container %s after removal: %v", id, err)
		}
	}
	assertNodeClean(t, n)
}

func monitorAlive(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
}

// kill -9 of crivet at random moments of every create and remove step,
// round after round; afterwards everything is listed, each pod and
// container goes with one Remove call, and nothing is left on the node.
// CRIVET_CRASH_SEED replays a run; CRIVET_CRASH_ROUNDS changes its length.
func TestKill9AtRandomPointsLeavesNothingBehind(t *testing.T) {
	n := newNode(t)
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{})
	other := fixtures.PushBusybox(t, n.reg.Ref("busybox:2"), fixtures.BusyboxConfig{Files: map[string]string{"/two": "2"}})
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CRIVET_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rounds := 64
	if s := os.Getenv("CRIVET_CRASH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d, %d rounds", seed, rounds)
	rnd := rand.New(rand.NewPCG(seed, 0))

	n.start()
	rc, ic := n.clients()
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}}); err != nil {
		t.Fatal(err)
	}
	ops := []string{"pull", "runp", "create", "start", "stop", "rm", "stopp", "rmp"}
	kills := map[string]int{}
	lastTook := map[string]time.Duration{} // last uninterrupted duration per operation
	recoveries := map[string]int{}         // recovery actions the daemon logged at its starts
	begin := time.Now()
	for round := 0; round < rounds; round++ {
		if round > 0 {
			n.start()
			rc, ic = n.clients()
		}
		pods, err := rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			exit := "still running"
			select {
			case e := <-n.exited:
				exit = fmt.Sprintf("exited: %v", e)
			default:
			}
			t.Fatalf("round %d: ListPodSandbox: %v (daemon %s)\n%s", round, err, exit, n.log)
		}
		ctrs, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
		if err != nil {
			t.Fatalf("round %d: ListContainers: %v\n%s", round, err, n.log)
		}
		// Bound what accumulates: past a few pods, remove instead.
		op := ops[round%len(ops)]
		if len(pods.Items) > 4 && (op == "runp" || op == "create") {
			op = "rmp"
		}
		setup := func(what string, err error) {
			if err != nil {
				t.Fatalf("round %d (%s): setup %s: %v\n%s", round, op, what, err, n.log)
			}
		}
		readyPod := func() (string, *runtimeapi.PodSandboxConfig) {
			for _, p := range pods.Items {
				if p.State == runtimeapi.PodSandboxState_SANDBOX_READY {
					cfg := crashPodConfig(n, p.Metadata.Name, false, 0)
					return p.Id, cfg
				}
			}
			name := fmt.Sprintf("setup%d", round)
			cfg := crashPodConfig(n, name, round%3 == 0, 0)
			resp, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			setup("runp", err)
			return resp.PodSandboxId, cfg
		}
		container := func(want runtimeapi.ContainerState) string {
			for _, c := range ctrs.Containers {
				if c.State == want {
					return c.Id
				}
			}
			podID, cfg := readyPod()
			c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
				Config: crashContainerConfig(fmt.Sprintf("setup%d", round), img.Ref), SandboxConfig: cfg})
			setup("create", err)
			if want == runtimeapi.ContainerState_CONTAINER_RUNNING {
				_, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId})
				setup("start", err)
			}
			return c.ContainerId
		}
		var call func(context.Context) error
		switch op {
		case "pull":
			_, _ = ic.RemoveImage(ctx(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: other.Ref}})
			call = func(c context.Context) error {
				_, err := ic.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: other.Ref}})
				return err
			}
		case "runp":
			cfg := crashPodConfig(n, fmt.Sprintf("p%d", round), round%3 == 1, int32(39000+round))
			call = func(c context.Context) error {
				_, err := rc.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: cfg})
				return err
			}
		case "create":
			podID, cfg := readyPod()
			call = func(c context.Context) error {
				_, err := rc.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
					Config: crashContainerConfig(fmt.Sprintf("c%d", round), img.Ref), SandboxConfig: cfg})
				return err
			}
		case "start":
			id := container(runtimeapi.ContainerState_CONTAINER_CREATED)
			call = func(c context.Context) error {
				_, err := rc.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: id})
				return err
			}
		case "stop":
			id := container(runtimeapi.ContainerState_CONTAINER_RUNNING)
			call = func(c context.Context) error {
				_, err := rc.StopContainer(c, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
				return err
			}
		case "rm":
			id := container(runtimeapi.ContainerState_CONTAINER_RUNNING)
			call = func(c context.Context) error {
				_, err := rc.RemoveContainer(c, &runtimeapi.RemoveContainerRequest{ContainerId: id})
				return err
			}
		case "stopp", "rmp":
			// A pod with a running container, so there is something to stop.
			container(runtimeapi.ContainerState_CONTAINER_RUNNING)
			ctrs, _ = rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
			id := ctrs.Containers[rnd.IntN(len(ctrs.Containers))].PodSandboxId
			call = func(c context.Context) error {
				var err error
				if op == "stopp" {
					_, err = rc.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
				} else {
					_, err = rc.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
				}
				return err
			}
		}
		// 0–300 ms, but within how long this operation took before: most
		// calls here take 10–100 ms, and a kill after the call is done
		// tests little.
		limit := 300 * time.Millisecond
		if d := lastTook[op]; d > 0 {
			limit = min(limit, d+d/5)
		}
		delay := time.Duration(rnd.Int64N(int64(limit)))
		done := make(chan error, 1)
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		go func() { done <- call(c) }()
		var took time.Duration
		select {
		case err := <-done:
			took = time.Since(start)
			lastTook[op] = took
			if err != nil {
				t.Fatalf("round %d: %s failed before the kill: %v\n%s", round, op, err, n.log)
			}
			time.Sleep(time.Until(start.Add(delay)))
		case <-time.After(delay):
		}
		n.kill9()
		cancel()
		if took == 0 {
			<-done
		}
		n.learnIDs()
		for _, m := range recoveryMsg.FindAllStringSubmatch(n.log.String(), -1) {
			recoveries[m[1]]++
		}
		if took == 0 {
			kills[op]++ // killed while the call was in flight
		}
		t.Logf("round %d: %s, kill after %s (call took %s)", round, op, delay, took)
	}
	t.Logf("%d rounds in %s; kills during the call by operation: %v; recovery actions logged: %v", rounds, time.Since(begin).Round(time.Millisecond), kills, recoveries)

	n.start()
	rc, ic = n.clients()
	if _, err := ic.ListImages(ctx(t), &runtimeapi.ListImagesRequest{}); err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	removeAllOnce(t, n, rc)
	assertNodeClean(t, n)
	if t.Failed() || os.Getenv("CRIVET_E2E_LOG") != "" {
		t.Logf("last daemon log:\n%s", n.log)
	}
}

// Image volumes are counted mounts in storage: a restart keeps those the
// records hold (the container still reads its volume) and releases one a
// crash left between a MountImage and its record; removal releases the
// rest.
func TestRecoveryReconcilesImageVolumeMounts(t *testing.T) {
	n := newNode(t)
	app := fixtures.PushBusybox(t, n.reg.Ref("app:1"), fixtures.BusyboxConfig{})
	data := fixtures.PushBusybox(t, n.reg.Ref("data:1"), fixtures.BusyboxConfig{Files: map[string]string{"/data.txt": "volume content\n"}})
	n.start()
	rc, ic := n.clients()
	for _, ref := range []string{app.Ref, data.Ref} {
		if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			t.Fatal(err)
		}
	}
	podCfg := crashPodConfig(n, "vol", false, 0)
	pod, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	cfg := crashContainerConfig("c", app.Ref)
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", Readonly: true, Image: &runtimeapi.ImageSpec{Image: data.Ref, UserSpecifiedImage: data.Ref}}}
	c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	n.ids[pod.PodSandboxId], n.ids[c.ContainerId] = true, true
	n.kill9()
	var layer string
	count := func(s storage.Store) int {
		k, err := s.Mounted(layer)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	n.withStore(t, func(s storage.Store) {
		img, err := s.Image(strings.TrimPrefix(data.ConfigDigest, "sha256:"))
		if err != nil {
			t.Fatal(err)
		}
		layer = img.TopLayer
		if got := count(s); got != 1 {
			t.Fatalf("image volume mount count %d, want 1", got)
		}
		// The mount of a create killed before it recorded the mount.
		if _, err := s.MountImage(img.ID, []string{"ro"}, ""); err != nil {
			t.Fatal(err)
		}
	})
	n.start()
	rc, _ = n.clients()
	// Recovery logs before the daemon serves, but the line reaches n.log
	// through a pipe, maybe after the daemon answered: wait for it.
	n.waitLog(10*time.Second, nil, "recovery: released image volume mounts no record holds")
	// Read from storage's own record: a second store opened beside the
	// running daemon's could unmount the driver's home at Shutdown.
	if got := n.layerMountCount(t, layer); got != 1 {
		t.Errorf("image volume mount count after recovery %d, want 1 (the container's)", got)
	}
	out, err := rc.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: c.ContainerId, Cmd: []string{"cat", "/vol/data.txt"}, Timeout: 10})
	if err != nil || string(out.Stdout) != "volume content\n" {
		t.Fatalf("image volume after the restart: %v %q %q", err, out.GetStdout(), out.GetStderr())
	}
	if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if got := n.layerMountCount(t, layer); got != 0 {
		t.Errorf("image volume mount count after removal %d, want 0", got)
	}
	assertNodeClean(t, n)
}
