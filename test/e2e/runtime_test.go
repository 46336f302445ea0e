package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cleanupPods removes every pod of a running node, so a failed test
// leaves no netns, veth or process behind.
func (n *node) cleanupPods() {
	if n.cmd == nil {
		return
	}
	rc, _ := n.clients()
	pods, err := rc.ListPodSandbox(ctx(n.t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		rc.StopPodSandbox(ctx(n.t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
		rc.RemovePodSandbox(ctx(n.t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id})
	}
}

func (n *node) podJSON(name, namespace string, extra map[string]any) string {
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": namespace, "uid": "uid-" + name + "-" + namespace, "attempt": 0},
		"hostname":      name,
		"log_directory": filepath.Join(n.dir, "logs", name),
		"linux":         map[string]any{},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	js, _ := json.Marshal(cfg)
	p := filepath.Join(n.dir, "pod-"+name+"-"+namespace+".json")
	fixtures.WriteFile(n.t, p, string(js))
	return p
}

func (n *node) ctrJSON(name, image, userImage string, extra map[string]any) string {
	cfg := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": image, "user_specified_image": userImage},
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	js, _ := json.Marshal(cfg)
	p := filepath.Join(n.dir, "ctr-"+name+".json")
	fixtures.WriteFile(n.t, p, string(js))
	return p
}

func firstLine(s string) string { return strings.TrimSpace(strings.SplitN(s, "\n", 2)[0]) }

// The walkthrough an operator does with crictl on a node.
func TestCrictlPodAndContainerLifecycle(t *testing.T) {
	n := newNode(t)
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{
		Files: map[string]string{"/www/index.html": "hello from crivet\n"},
	})
	n.start()
	n.mustCrictl("pull", img.Ref)

	pod := n.podJSON("web", "default", map[string]any{
		"port_mappings": []map[string]any{{"protocol": 0, "container_port": 80, "host_port": 38081}},
	})
	podID := firstLine(n.mustCrictl("runp", pod))
	var podInspect struct {
		Status struct {
			State   string
			Network struct{ IP string }
		}
	}
	json.Unmarshal([]byte(n.mustCrictl("inspectp", "-o", "json", podID)), &podInspect)
	if podInspect.Status.State != "SANDBOX_READY" || !strings.HasPrefix(podInspect.Status.Network.IP, "10.198.0.") {
		t.Fatalf("pod status: %+v", podInspect.Status)
	}

	ctr := n.ctrJSON("httpd", img.Ref, img.Ref, map[string]any{
		"command": []string{"sh", "-c", "echo started; echo to-stderr >&2; exec httpd -f -p 80 -h /www"},
	})
	ctrID := firstLine(n.mustCrictl("create", podID, ctr, pod))
	if out := n.mustCrictl("ps", "-a", "-q"); !strings.Contains(out, ctrID) {
		t.Fatalf("ps -a: %q", out)
	}
	n.mustCrictl("start", ctrID)

	var inspect struct {
		Status struct {
			State    string
			ImageID  string `json:"imageId"`
			ImageRef string `json:"imageRef"`
			LogPath  string
		}
	}
	json.Unmarshal([]byte(n.mustCrictl("inspect", "-o", "json", ctrID)), &inspect)
	if inspect.Status.State != "CONTAINER_RUNNING" || inspect.Status.ImageID != img.ConfigDigest || inspect.Status.ImageRef != img.ConfigDigest {
		t.Fatalf("inspect: %+v", inspect.Status)
	}

	// Logs in the CRI format, read back by crictl.
	waitFor(t, "logs", func() bool { out, _, _ := n.crictl("logs", ctrID); return strings.Contains(out, "started") })
	raw, _ := os.ReadFile(inspect.Status.LogPath)
	if !strings.Contains(string(raw), " stdout F started\n") || !strings.Contains(string(raw), " stderr F to-stderr\n") {
		t.Fatalf("log file not in CRI format: %q", raw)
	}

	// exec -s (ExecSync) and exec through the streaming server.
	if out := n.mustCrictl("exec", "-s", ctrID, "cat", "/www/index.html"); !strings.HasPrefix(out, "hello from crivet\n") {
		t.Fatalf("exec -s: %q", out)
	}
	rc, _ := n.clients()
	es, err := rc.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Timeout: 10})
	if err != nil || string(es.Stdout) != "out\n" || string(es.Stderr) != "err\n" || es.ExitCode != 3 {
		t.Fatalf("ExecSync: %v %+v", err, es)
	}
	if out := n.mustCrictl("exec", ctrID, "hostname"); strings.TrimSpace(out) != "web" {
		t.Fatalf("exec hostname: %q", out)
	}
	// exec -it through a real pseudo-terminal (script(1) gives crictl one).
	script := exec.Command("script", "-qec", fmt.Sprintf("%s --config %s exec -it %s sh -c 'tty; echo done'", crictlBin, filepath.Join(n.dir, "crictl.yaml"), ctrID), "/dev/null")
	out, err := script.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "/dev/pts/") || !strings.Contains(string(out), "done") {
		t.Fatalf("exec -it: %v %q", err, out)
	}

	// The web server answers on the pod IP, on the hostPort and through port-forward.
	get := func(url string) string {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor(t, "pod IP", func() bool { return get("http://"+podInspect.Status.Network.IP+"/") == "hello from crivet\n" })
	if got := get("http://127.0.0.1:38081/"); got != "hello from crivet\n" {
		t.Fatalf("hostPort: %q", got)
	}
	// A port the kernel just handed out: a fixed one in the ephemeral
	// range can be taken by any other socket on the machine.
	fwdPort := freePort(t)
	pf := exec.Command(crictlBin, "--config", filepath.Join(n.dir, "crictl.yaml"), "port-forward", podID, fmt.Sprintf("%d:80", fwdPort))
	pfOut, _ := pf.StdoutPipe()
	pf.Stderr = pf.Stdout
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pf.Process.Kill(); pf.Wait() }()
	// crictl may log warnings first; the forward is up once it says so
	// for the IPv4 listener (it says so for [::1] too, in either order).
	pfLines := bufio.NewReader(pfOut)
	for {
		line, err := pfLines.ReadString('\n')
		if strings.HasPrefix(line, "Forwarding from 127.0.0.1:") {
			break
		}
		if err != nil {
			t.Fatalf("port-forward ended before forwarding: %q %v", line, err)
		}
	}
	if got := get(fmt.Sprintf("http://127.0.0.1:%d/", fwdPort)); got != "hello from crivet\n" {
		t.Fatalf("port-forward: %q", got)
	}

	// Pod stats carry the pod's network, read from its namespace.
	rcl, _ := n.clients()
	ps, err := rcl.PodSandboxStats(ctx(t), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil || ps.Stats.GetLinux().GetNetwork().GetDefaultInterface().GetName() != "eth0" ||
		ps.Stats.Linux.Network.DefaultInterface.RxBytes.GetValue() == 0 {
		t.Fatalf("PodSandboxStats network: %v %+v", err, ps.GetStats().GetLinux().GetNetwork())
	}
	// crictl inspect shows the container's pid.
	var withPid struct{ Info struct{ Pid int } }
	json.Unmarshal([]byte(n.mustCrictl("inspect", "-o", "json", ctrID)), &withPid)
	if withPid.Info.Pid <= 0 {
		t.Fatalf("inspect has no pid")
	}

	// Stats.
	var stats struct {
		Stats []struct {
			Memory struct {
				WorkingSetBytes struct{ Value string }
			}
		}
	}
	json.Unmarshal([]byte(n.mustCrictl("stats", "-o", "json", ctrID)), &stats)
	if len(stats.Stats) != 1 || stats.Stats[0].Memory.WorkingSetBytes.Value == "" || stats.Stats[0].Memory.WorkingSetBytes.Value == "0" {
		t.Fatalf("stats: %+v", stats)
	}

	n.mustCrictl("stop", ctrID)
	json.Unmarshal([]byte(n.mustCrictl("inspect", "-o", "json", ctrID)), &inspect)
	if inspect.Status.State != "CONTAINER_EXITED" {
		t.Fatalf("after stop: %+v", inspect.Status)
	}
	n.mustCrictl("rm", ctrID)
	n.mustCrictl("stopp", podID)
	n.mustCrictl("rmp", podID)
	if out := n.mustCrictl("pods", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("pods left: %q", out)
	}
	assertNothingLeft(t, n)
}

// assertNothingLeft checks the node holds no mount, netns pin, veth or
// process of crivet's containers.
func assertNothingLeft(t *testing.T, n *node) {
	t.Helper()
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	storeHome := filepath.Join(n.root, "storage", "overlay")
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		// The overlay driver keeps its home directory mounted (private)
		// while the store is open: that is the store's, not a container's.
		if len(f) > 4 && strings.HasPrefix(f[4], n.dir) && f[4] != storeHome {
			t.Errorf("mount left: %s", l)
		}
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", "master", e2eBridge).CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("veth left on the bridge: %s", out)
	}
	// No cgroup of a crivet container (crivet-<id>) is left in any hierarchy.
	filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), "crivet-") && n.knownID(strings.TrimPrefix(d.Name(), "crivet-")) {
			t.Errorf("cgroup left: %s", p)
		}
		return nil
	})
	if out, _ := exec.Command("ip", "netns", "list").CombinedOutput(); strings.Contains(string(out), "crivet") {
		t.Errorf("network namespace left: %s", out)
	}
	out, _ := exec.Command("pgrep", "-f", filepath.Join(n.dir, "run")).CombinedOutput()
	for _, pid := range strings.Fields(string(out)) {
		if n.cmd != nil && pid == fmt.Sprint(n.cmd.Process.Pid) {
			continue // the daemon itself
		}
		cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		t.Errorf("process left: %s %q", pid, cmdline)
	}
}

// knownID reports whether id was a container or pod of this node (its
// bundles directory names every one crivet created).
func (n *node) knownID(id string) bool {
	return n.ids[id]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// The mission's corner case: kubelet pulls only when an image is absent,
// so an image admitted by one namespace's loose policy must not run in a
// namespace whose policy rejects it.
func TestCreateRejectsImageAdmittedOnlyByAnotherNamespace(t *testing.T) {
	n := newNode(t)
	key := fixtures.NewSigstoreKey(t)
	unsigned := fixtures.PushBusybox(t, n.reg.Ref("app/unsigned:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	signed := fixtures.PushBusybox(t, n.reg.Ref("app/signed:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}, Files: map[string]string{"/signed": "yes"}})
	key.Sign(t, signed.Ref)
	n.setGlobal(`{"default":[{"type":"insecureAcceptAnything"}]}`)
	n.setNamespace("strict", keyPolicy(key.PublicKeyPath))
	n.start()
	rc, ic := n.clients()

	// Pulled in a permissive namespace.
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: unsigned.Ref},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Namespace: "loose"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: signed.Ref}}); err != nil {
		t.Fatal(err)
	}
	n.reg.Stop() // every create-time check is local

	strictPod := n.podJSON("s", "strict", nil)
	strictID := firstLine(n.mustCrictl("runp", strictPod))
	podCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "s", Namespace: "strict", Uid: "uid-s-strict"}}
	create := func(podID, name, image, userImage string, sandboxCfg *runtimeapi.PodSandboxConfig) (string, error) {
		resp, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: sandboxCfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name},
				Image: &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: userImage}, Linux: &runtimeapi.LinuxContainerConfig{}}})
		return resp.GetContainerId(), err
	}
	bundles := func() int { ents, _ := os.ReadDir(filepath.Join(n.dir, "run", "bundles")); return len(ents) }
	before := bundles()

	const want = "SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists"
	for _, tc := range []struct{ name, image, user string }{
		{"by-ref", unsigned.Ref, unsigned.Ref},
		{"by-id", unsigned.ConfigDigest, unsigned.Ref},
		{"no-user-image", unsigned.Ref, ""}, // crictl and older kubelets
	} {
		_, err := create(strictID, tc.name, tc.image, tc.user, podCfg)
		st, _ := status.FromError(err)
		if st.Code() != codes.Unknown || st.Message() != want {
			t.Fatalf("%s: create in the strict namespace: %v, want Unknown %q", tc.name, err, want)
		}
	}
	// The namespace comes from the stored pod, not from what the request claims.
	_, err := create(strictID, "lying", unsigned.Ref, unsigned.Ref, &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Namespace: "loose"}})
	if st, _ := status.FromError(err); st.Message() != want {
		t.Fatalf("create claiming another namespace: %v", err)
	}
	if out := n.mustCrictl("ps", "-a", "-q"); strings.TrimSpace(out) != "" || bundles() != before {
		t.Fatalf("a rejected create left something: ps=%q bundles %d→%d", out, before, bundles())
	}
	// crictl shows the same message.
	if _, stderr, err := n.crictl("create", strictID, n.ctrJSON("c", unsigned.Ref, "", nil), strictPod); err == nil || !strings.Contains(stderr, want) {
		t.Fatalf("crictl create: %v %s", err, stderr)
	}

	// The signed image runs in the strict namespace, the unsigned one in the loose one.
	if _, err := create(strictID, "signed", signed.Ref, signed.Ref, nil); err != nil {
		t.Fatalf("signed image in the strict namespace: %v", err)
	}
	loosePod := n.podJSON("l", "loose", nil)
	looseID := firstLine(n.mustCrictl("runp", loosePod))
	cid, err := create(looseID, "unsigned", unsigned.Ref, unsigned.Ref, nil)
	if err != nil {
		t.Fatalf("unsigned image in the loose namespace: %v", err)
	}
	n.mustCrictl("start", cid)

	// A policy edit after the pull decides the next create.
	n.setNamespace("loose", keyPolicy(key.PublicKeyPath))
	if _, err := create(looseID, "after-edit", unsigned.Ref, unsigned.Ref, nil); err == nil || !strings.Contains(err.Error(), "SignatureValidationFailed") {
		t.Fatalf("create after tightening the policy: %v", err)
	}
}

// kill -9 of crivet leaves running containers running and logging; exits
// that happen meanwhile are reported with their real code.
func TestContainersSurviveDaemonKill(t *testing.T) {
	n := newNode(t)
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{})
	n.start()
	n.mustCrictl("pull", img.Ref)
	pod := n.podJSON("survivor", "default", nil)
	podID := firstLine(n.mustCrictl("runp", pod))
	long := firstLine(n.mustCrictl("create", podID, n.ctrJSON("ticker", img.Ref, img.Ref, map[string]any{
		"command": []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"}}), pod))
	short := firstLine(n.mustCrictl("create", podID, n.ctrJSON("quitter", img.Ref, img.Ref, map[string]any{
		"command": []string{"sh", "-c", "sleep 1; exit 7"}}), pod))
	n.mustCrictl("start", long)
	n.mustCrictl("start", short)

	n.kill9()
	time.Sleep(1500 * time.Millisecond) // the quitter exits while crivet is down
	n.start()

	var inspect struct {
		Status struct {
			State    string
			ExitCode int32
		}
	}
	json.Unmarshal([]byte(n.mustCrictl("inspect", "-o", "json", long)), &inspect)
	if inspect.Status.State != "CONTAINER_RUNNING" {
		t.Fatalf("long-running container after kill -9: %+v", inspect.Status)
	}
	json.Unmarshal([]byte(n.mustCrictl("inspect", "-o", "json", short)), &inspect)
	if inspect.Status.State != "CONTAINER_EXITED" || inspect.Status.ExitCode != 7 {
		t.Fatalf("container that exited while crivet was down: %+v", inspect.Status)
	}
	// Still logging: the tick count grows.
	count := func() int { out, _, _ := n.crictl("logs", long); return strings.Count(out, "tick") }
	c1 := count()
	time.Sleep(500 * time.Millisecond)
	if c2 := count(); c2 <= c1 {
		t.Fatalf("container stopped logging after the daemon restart (%d → %d)", c1, c2)
	}
	n.mustCrictl("stopp", podID)
	n.mustCrictl("rmp", podID)
	assertNothingLeft(t, n)
}

// A process that ignores SIGTERM is killed when the timeout runs out.
func TestStopIsBoundedByItsTimeout(t *testing.T) {
	n := newNode(t)
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{})
	n.start()
	n.mustCrictl("pull", img.Ref)
	pod := n.podJSON("stubborn", "default", nil)
	podID := firstLine(n.mustCrictl("runp", pod))
	id := firstLine(n.mustCrictl("create", podID, n.ctrJSON("stubborn", img.Ref, img.Ref, map[string]any{
		"command": []string{"sh", "-c", "trap '' TERM; while true; do sleep 1; done"}}), pod))
	n.mustCrictl("start", id)
	start := time.Now()
	n.mustCrictl("stop", "--timeout", "2", id)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("stop took %s", d)
	}
	var inspect struct {
		Status struct {
			State    string
			ExitCode int32
		}
	}
	json.Unmarshal([]byte(n.mustCrictl("inspect", "-o", "json", id)), &inspect)
	if inspect.Status.State != "CONTAINER_EXITED" || inspect.Status.ExitCode != 128+int32(syscall.SIGKILL) {
		t.Fatalf("after stop: %+v", inspect.Status)
	}
}

// Image volumes (KEP-4639) are checked against the pod namespace's policy
// like the container's own image, and mounted read-only.
func TestImageVolumesAreVerifiedAndMounted(t *testing.T) {
	n := newNode(t)
	key := fixtures.NewSigstoreKey(t)
	app := fixtures.PushBusybox(t, n.reg.Ref("app/main:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	data := fixtures.PushBusybox(t, n.reg.Ref("app/data:1"), fixtures.BusyboxConfig{Files: map[string]string{"/data.txt": "volume content\n"}})
	unsignedData := fixtures.PushBusybox(t, n.reg.Ref("app/data:unsigned"), fixtures.BusyboxConfig{Files: map[string]string{"/data.txt": "unsigned\n"}})
	key.Sign(t, app.Ref)
	key.Sign(t, data.Ref)
	n.setGlobal(keyPolicy(key.PublicKeyPath))
	n.start()
	for _, r := range []string{app.Ref, data.Ref} {
		n.mustCrictl("pull", r)
	}
	// Pulled where no policy applies... by a namespace with a loose file.
	n.setNamespace("loose", `{"default":[{"type":"insecureAcceptAnything"}]}`)
	n.mustCrictl("pull", "--pod-config", n.podJSON("x", "loose", nil), unsignedData.Ref)

	pod := n.podJSON("vol", "default", nil)
	podID := firstLine(n.mustCrictl("runp", pod))
	volume := func(name, image string, extra map[string]any) string {
		m := map[string]any{"container_path": "/vol", "readonly": true, "image": map[string]any{"image": image, "user_specified_image": image}}
		for k, v := range extra {
			m[k] = v
		}
		return n.ctrJSON(name, app.Ref, app.Ref, map[string]any{"mounts": []map[string]any{m}})
	}
	withVolume := func(name, image string) string { return volume(name, image, nil) }
	if _, stderr, err := n.crictl("create", podID, withVolume("bad", unsignedData.Ref), pod); err == nil || !strings.Contains(stderr, "SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists") {
		t.Fatalf("unsigned image volume: %v %s", err, stderr)
	}
	// kubelet always asks for image volumes read-only; a writable one is
	// a request error, not something to quietly make read-only.
	if _, stderr, err := n.crictl("create", podID, volume("writable", data.Ref, map[string]any{"readonly": false}), pod); err == nil || !strings.Contains(stderr, "InvalidArgument") || !strings.Contains(stderr, "read-only") {
		t.Fatalf("writable image volume: %v %s", err, stderr)
	}
	// A sub path the image does not have fails the create, naming it.
	if _, stderr, err := n.crictl("create", podID, volume("nosub", data.Ref, map[string]any{"image_sub_path": "not-there"}), pod); err == nil || !strings.Contains(stderr, "InvalidArgument") || !strings.Contains(stderr, "not-there") || !strings.Contains(stderr, "does not exist") {
		t.Fatalf("missing image sub path: %v %s", err, stderr)
	}
	id := firstLine(n.mustCrictl("create", podID, withVolume("good", data.Ref), pod))
	n.mustCrictl("start", id)
	if out := n.mustCrictl("exec", "-s", id, "cat", "/vol/data.txt"); !strings.HasPrefix(out, "volume content\n") {
		t.Fatalf("image volume content: %q", out)
	}
	if _, _, err := n.crictl("exec", "-s", id, "touch", "/vol/x"); err == nil {
		t.Fatal("image volume is writable")
	}
	// The status names the image the volume resolved to (KEP-5365).
	rc, ic := n.clients()
	st, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	dataStatus, err := ic.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: data.Ref}})
	if err != nil || dataStatus.GetImage() == nil {
		t.Fatalf("image status of %s: %v", data.Ref, err)
	}
	var ref string
	for _, m := range st.GetStatus().GetMounts() {
		if m.GetContainerPath() == "/vol" {
			ref = m.GetImage().GetImageRef()
		}
	}
	if ref != dataStatus.GetImage().GetId() {
		t.Fatalf("image volume image_ref = %q, want the image ID %q", ref, dataStatus.GetImage().GetId())
	}
	// A sub path mounts only that part of the image: /bin of the image
	// at /vol, so /vol/busybox exists and /vol/data.txt does not.
	sub := firstLine(n.mustCrictl("create", podID, volume("sub", data.Ref, map[string]any{"image_sub_path": "bin"}), pod))
	n.mustCrictl("start", sub)
	if _, stderr, err := n.crictl("exec", "-s", sub, "ls", "/vol/busybox"); err != nil {
		t.Fatalf("image volume sub path: /vol/busybox: %v %s", err, stderr)
	}
	if _, _, err := n.crictl("exec", "-s", sub, "ls", "/vol/data.txt"); err == nil {
		t.Fatal("image volume sub path mounted the whole image")
	}
	n.mustCrictl("stopp", podID)
	n.mustCrictl("rmp", podID)
	assertNothingLeft(t, n)
}

// startSubscribed starts the node with a busybox image pulled and a
// GetContainerEvents stream open.
func (n *node) startSubscribed(t *testing.T) (fixtures.Image, runtimeapi.RuntimeService_GetContainerEventsClient) {
	t.Helper()
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	n.start()
	n.mustCrictl("pull", img.Ref)
	rc, _ := n.clients()
	stream, err := rc.GetContainerEvents(ctx(t), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the subscription register
	return img, stream
}

// GetContainerEvents streams lifecycle events with the pod's status, as
// kubelet's evented PLEG expects.
func TestContainerEventsCarryPodStatus(t *testing.T) {
	n := newNode(t)
	img, stream := n.startSubscribed(t)
	pod := n.podJSON("ev", "default", nil)
	podID := firstLine(n.mustCrictl("runp", pod))
	id := firstLine(n.mustCrictl("create", podID, n.ctrJSON("ev", img.Ref, img.Ref, nil), pod))
	n.mustCrictl("start", id)
	for _, want := range []runtimeapi.ContainerEventType{runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT} {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.ContainerId != id || ev.ContainerEventType != want || ev.PodSandboxStatus.GetId() != podID || len(ev.ContainersStatuses) != 1 {
			t.Fatalf("event %v: %+v", want, ev)
		}
		if os.Getenv("CRIVET_E2E_LOG") != "" {
			t.Log(n.log.String())
		}
	}
}

// attach, logs -f, the Stream* forms and CRI metrics, on one running pod.
func TestAttachFollowStreamsAndMetrics(t *testing.T) {
	n := newNode(t)
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{})
	n.start()
	n.mustCrictl("pull", img.Ref)
	pod := n.podJSON("att", "default", nil)
	podID := firstLine(n.mustCrictl("runp", pod))
	id := firstLine(n.mustCrictl("create", podID, n.ctrJSON("ticker", img.Ref, img.Ref, map[string]any{
		"command": []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"}}), pod))
	n.mustCrictl("start", id)

	// crictl attach and crictl logs -f both see new output arrive.
	for _, args := range [][]string{{"attach", id}, {"logs", "-f", id}} {
		cmd := exec.Command(crictlBin, append([]string{"--config", filepath.Join(n.dir, "crictl.yaml")}, args...)...)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(out)
		seen := map[string]bool{}
		deadline := time.Now().Add(10 * time.Second)
		for len(seen) < 3 && time.Now().Before(deadline) {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			if strings.HasPrefix(line, "tick ") {
				seen[line] = true
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		if len(seen) < 3 {
			t.Fatalf("crictl %s: saw %d lines", strings.Join(args, " "), len(seen))
		}
	}

	rc, ic := n.clients()
	// Stream* answer what List* answer.
	ps, err := rc.StreamPodSandboxes(ctx(t), &runtimeapi.StreamPodSandboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ps.Recv(); err != nil || len(r.PodSandboxes) != 1 || r.PodSandboxes[0].Id != podID {
		t.Fatalf("StreamPodSandboxes: %v %v", r, err)
	}
	cs, _ := rc.StreamContainers(ctx(t), &runtimeapi.StreamContainersRequest{})
	if r, err := cs.Recv(); err != nil || len(r.Containers) != 1 || r.Containers[0].Id != id {
		t.Fatalf("StreamContainers: %v %v", r, err)
	}
	is, _ := ic.StreamImages(ctx(t), &runtimeapi.StreamImagesRequest{})
	if r, err := is.Recv(); err != nil || len(r.Images) != 1 || r.Images[0].Id != img.ConfigDigest {
		t.Fatalf("StreamImages: %v %v", r, err)
	}

	// Metrics: descriptors, and values for the running container.
	d, err := rc.ListMetricDescriptors(ctx(t), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil || len(d.Descriptors) == 0 {
		t.Fatalf("ListMetricDescriptors: %v %v", d, err)
	}
	m, err := rc.ListPodSandboxMetrics(ctx(t), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil || len(m.PodMetrics) != 1 || len(m.PodMetrics[0].ContainerMetrics) != 1 {
		t.Fatalf("ListPodSandboxMetrics: %v %v", m, err)
	}
	// Every descriptor has values, with as many labels as it declares
	// (block I/O needs per-device accounting this VM's disk may not give;
	// critest treats those as optional too).
	optional := map[string]bool{"container_blkio_device_usage_total": true, "container_fs_reads_bytes_total": true,
		"container_fs_reads_total": true, "container_fs_writes_bytes_total": true, "container_fs_writes_total": true}
	seen := map[string][]string{}
	all := append([]*runtimeapi.Metric(nil), m.PodMetrics[0].Metrics...)
	all = append(all, m.PodMetrics[0].ContainerMetrics[0].Metrics...)
	for _, metric := range all {
		if _, ok := seen[metric.Name]; !ok {
			seen[metric.Name] = metric.LabelValues
		}
		if metric.Name == "container_memory_working_set_bytes" && metric.Value.GetValue() == 0 {
			t.Fatalf("running container has no working set: %+v", metric)
		}
	}
	for _, desc := range d.Descriptors {
		labels, ok := seen[desc.Name]
		if !ok && !optional[desc.Name] {
			t.Errorf("no value for metric %s", desc.Name)
		}
		if ok && len(labels) != len(desc.LabelKeys) {
			t.Errorf("metric %s has %d label values, its descriptor %d keys", desc.Name, len(labels), len(desc.LabelKeys))
		}
	}

	n.mustCrictl("stopp", podID)
	n.mustCrictl("rmp", podID)
	assertNothingLeft(t, n)
}
