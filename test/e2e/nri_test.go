package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var nriPlugin struct {
	once sync.Once
	path string
	err  error
}

// nriPluginBin builds test/tools/nriplugin (NRI's plugin stub) once.
func nriPluginBin(t *testing.T) string {
	t.Helper()
	nriPlugin.once.Do(func() {
		dir, err := os.MkdirTemp("", "crivet-nriplugin")
		if err != nil {
			nriPlugin.err = err
			return
		}
		nriPlugin.path = filepath.Join(dir, "nriplugin")
		out, err := exec.Command("go", "build", "-o", nriPlugin.path, "github.com/crivet/crivet/test/tools/nriplugin").CombinedOutput()
		if err != nil {
			nriPlugin.err = fmt.Errorf("build nriplugin: %v\n%s", err, out)
		}
	})
	if nriPlugin.err != nil {
		t.Fatal(nriPlugin.err)
	}
	return nriPlugin.path
}

// nriNode is a node with NRI enabled: its socket, plugin directory and
// plugin configuration directory under the node's directory.
func nriNode(t *testing.T, requestTimeout string) *node {
	n := newNode(t)
	n.toml = fmt.Sprintf("[nri]\nenable = true\nsocket_path = %q\nplugin_path = %q\nplugin_config_path = %q\nrequest_timeout = %q\n",
		n.nriSock(), filepath.Join(n.dir, "nri", "plugins"), filepath.Join(n.dir, "nri", "conf.d"), requestTimeout)
	return n
}

func (n *node) nriSock() string { return filepath.Join(n.dir, "nri.sock") }

// runPlugin starts an external plugin and waits until crivet lists it as
// connected.
func (n *node) runPlugin(name, mode, events, mountSrc string) *exec.Cmd {
	n.t.Helper()
	cmd := exec.Command(nriPluginBin(n.t), "-socket", n.nriSock(), "-name", name, "-idx", "50", "-mode", mode, "-events", events, "-mount-src", mountSrc)
	var out fixtures.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	n.waitPlugin("50-"+name, true)
	return cmd
}

// nriInfo is crictl info's "nri" object.
type nriInfo struct {
	Socket  string
	Plugins []struct {
		Name     string
		Calls    uint64
		Failures uint64
	}
}

func (n *node) nriInfo() nriInfo {
	n.t.Helper()
	var info struct{ NRI nriInfo }
	out := n.mustCrictl("info")
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		n.t.Fatalf("crictl info: %v\n%s", err, out)
	}
	return info.NRI
}

func (n *node) pluginListed(name string) bool {
	for _, p := range n.nriInfo().Plugins {
		if p.Name == name {
			return true
		}
	}
	return false
}

// waitPlugin waits until crictl info lists (or no longer lists) a plugin.
func (n *node) waitPlugin(name string, listed bool) {
	n.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if n.pluginListed(name) == listed {
			return
		}
	}
	n.t.Fatalf("plugin %s listed=%v never came; crictl info nri: %+v\ncrivet log:\n%s", name, listed, n.nriInfo(), n.log)
}

// pluginEvent is one line the test plugin recorded.
type pluginEvent struct{ Event, Pod, PodName, Namespace, Container, Name, Image string }

func readEvents(t *testing.T, path string) []pluginEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []pluginEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e pluginEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// eventsOf are the names of the events about one pod or container, in order.
func eventsOf(evs []pluginEvent, id string) []string {
	var out []string
	for _, e := range evs {
		if e.Container == id || (e.Container == "" && e.Pod == id) {
			out = append(out, e.Event)
		}
	}
	return out
}

func (n *node) exec(ctrID, script string) string {
	n.t.Helper()
	return strings.TrimSpace(n.mustCrictl("exec", ctrID, "sh", "-c", script))
}

// A pre-registered plugin, started by crivet from its plugin directory,
// adjusts a real container (env, a mount, a device, memory and CPU
// limits, an rlimit) and changes a resource update, and sees every step
// of the pod and the container once, in order; a plugin connecting later
// is synchronized with the container. crictl info and the metrics show
// the plugin.
func TestNRIPluginAdjustsContainersAndSeesEveryStep(t *testing.T) {
	n := nriNode(t, "10s")
	img := fixtures.PushBusybox(t, n.reg.Ref("nri/busybox:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	src := filepath.Join(n.dir, "nri-src")
	fixtures.WriteFile(t, filepath.Join(src, "hello"), "hello from the plugin\n")
	events := filepath.Join(n.dir, "events-adjust.jsonl")
	copyFile(t, nriPluginBin(t), filepath.Join(n.dir, "nri", "plugins", "10-adjust"), 0o755)
	fixtures.WriteFile(t, filepath.Join(n.dir, "nri", "conf.d", "10-adjust.conf"), fmt.Sprintf("-events=%s\n-mount-src=%s\n", events, src))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	n.extraArgs = []string{"--metrics-address", addr}
	n.start()
	n.waitPlugin("10-adjust", true)

	n.mustCrictl("pull", img.Ref)
	pod := n.podJSON("nri", "default", nil)
	podID := firstLine(n.mustCrictl("runp", pod))
	ctrID := firstLine(n.mustCrictl("create", podID, n.ctrJSON("adjusted", img.Ref, img.Ref, nil), pod))
	n.mustCrictl("start", ctrID)

	for _, c := range []struct{ what, script, want string }{
		{"env", "echo $NRI_TEST", "adjusted"},
		{"mount", "cat /nri/hello", "hello from the plugin"},
		{"mount is read-only", "touch /nri/x 2>/dev/null && echo writable || echo read-only", "read-only"},
		{"device", "stat -c %t:%T /dev/nri-null", "1:3"},
		{"memory limit", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes", fmt.Sprint(64 << 20)},
		{"cpu shares", "cat /sys/fs/cgroup/cpu/cpu.shares", "512"},
		{"rlimit", "ulimit -n", "4242"},
	} {
		if got := n.exec(ctrID, c.script); got != c.want {
			t.Errorf("%s: %q = %q, want %q", c.what, c.script, got, c.want)
		}
	}
	// The plugin turns kubelet's 128 MiB into 96 MiB.
	n.mustCrictl("update", "--memory", fmt.Sprint(128<<20), ctrID)
	if got, want := n.exec(ctrID, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"), fmt.Sprint(96<<20); got != want {
		t.Errorf("memory limit after the update: %s, want %s", got, want)
	}

	info := n.nriInfo()
	if info.Socket != n.nriSock() || len(info.Plugins) != 1 || info.Plugins[0].Calls == 0 {
		t.Errorf("crictl info nri: %+v", info)
	}

	// A plugin connecting now is told of the pod and the container.
	syncEvents := filepath.Join(n.dir, "events-sync.jsonl")
	n.runPlugin("sync", "observe", syncEvents, "")
	if got := eventsOf(readEvents(t, syncEvents), ctrID); !slices.Equal(got, []string{"SynchronizeContainer"}) {
		t.Errorf("late plugin's events for the container: %v", got)
	}
	if got := eventsOf(readEvents(t, syncEvents), podID); !slices.Contains(got, "SynchronizePod") {
		t.Errorf("late plugin's events for the pod: %v", got)
	}

	n.mustCrictl("stop", ctrID)
	n.mustCrictl("rm", ctrID)
	n.mustCrictl("stopp", podID)
	n.mustCrictl("stopp", podID) // a second stop tells no plugin
	n.mustCrictl("rmp", podID)

	evs := readEvents(t, events)
	wantCtr := []string{"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer",
		"UpdateContainer", "PostUpdateContainer", "StopContainer", "RemoveContainer"}
	if got := eventsOf(evs, ctrID); !slices.Equal(got, wantCtr) {
		t.Errorf("container events: %v\nwant %v", got, wantCtr)
	}
	if got := eventsOf(evs, podID); !slices.Equal(got, []string{"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"}) {
		t.Errorf("pod events: %v", got)
	}
	var order []string
	for _, e := range evs {
		if e.Pod == podID && (e.Container == "" || e.Container == ctrID) {
			order = append(order, e.Event)
		}
	}
	if i, j := slices.Index(order, "RunPodSandbox"), slices.Index(order, "CreateContainer"); i < 0 || j < i {
		t.Errorf("RunPodSandbox is not before CreateContainer: %v", order)
	}
	if i, j := slices.Index(order, "RemoveContainer"), slices.Index(order, "RemovePodSandbox"); i < 0 || j < i {
		t.Errorf("RemoveContainer is not before RemovePodSandbox: %v", order)
	}
	for _, e := range evs {
		if e.Event == "CreateContainer" && e.Container == ctrID {
			if e.Name != "adjusted" || !strings.Contains(e.Image, "nri/busybox") || e.Namespace != "default" {
				t.Errorf("CreateContainer as the plugin saw it: %+v", e)
			}
		}
	}

	f := fixtures.ScrapeMetrics(t, "http://"+addr+"/metrics")
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"crivet_nri_plugin_calls_total", []string{"plugin=10-adjust", "event=CreateContainer", "result=ok"}, 1},
		{"crivet_nri_plugin_calls_total", []string{"plugin=10-adjust", "event=StopContainer", "result=ok"}, 1},
		{"crivet_nri_plugin_calls_total", []string{"plugin=50-sync", "event=Synchronize", "result=ok"}, 1},
		{"crivet_nri_plugins", nil, 2},
	} {
		if got := series(f, c.name, c.labels...); got != c.want {
			t.Errorf("%s{%s} = %v, want %v (-1: no such series)", c.name, strings.Join(c.labels, ","), got, c.want)
		}
	}
	if t.Failed() {
		t.Logf("crivet log:\n%s", n.log)
	}
}

// The boundary: crivet's signature check runs first, and no plugin can
// put something else in the verified image's place. A refused image never
// reaches the plugin; an adjustment that would replace the root file
// system, join another mount namespace, rewrite crivet's annotations or
// inject unresolvable CDI devices fails the create and leaves nothing; the
// plugin stays connected and other containers run.
func TestNRIPluginCannotTakeTheVerifiedImagesPlace(t *testing.T) {
	n := nriNode(t, "10s")
	key := fixtures.NewSigstoreKey(t)
	signed := fixtures.PushBusybox(t, n.reg.Ref("nri/signed:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	key.Sign(t, signed.Ref)
	unsigned := fixtures.PushBusybox(t, n.reg.Ref("nri/unsigned:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}, Files: map[string]string{"/unsigned": "yes\n"}})
	n.setNamespace("strict", keyPolicy(key.PublicKeyPath))
	// What a hostile plugin would mount at /: another root filesystem.
	other := filepath.Join(n.dir, "other-rootfs")
	fixtures.WriteFile(t, filepath.Join(other, "bin", "sh"), "#!/not/verified\n")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	n.extraArgs = []string{"--metrics-address", addr}
	n.start()
	events := filepath.Join(n.dir, "events-hostile.jsonl")
	n.runPlugin("hostile", "hostile", events, other)
	rc, ic := n.clients()

	n.mustCrictl("pull", signed.Ref)
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: unsigned.Ref}}); err != nil {
		t.Fatal(err) // under the (loose) global policy
	}
	pod := n.podJSON("nri-strict", "strict", nil)
	podID := firstLine(n.mustCrictl("runp", pod))
	create := func(name, ref string) error {
		_, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name},
				Image: &runtimeapi.ImageSpec{Image: ref, UserSpecifiedImage: ref}, Linux: &runtimeapi.LinuxContainerConfig{}}})
		return err
	}

	// The pod's own bundles (its infra process): refused creates add none.
	podBundles, _ := os.ReadDir(filepath.Join(n.runRoot(), "bundles"))
	// The signature check first: the plugin never hears of the refused image.
	if err := create("unsigned", unsigned.Ref); err == nil || !strings.Contains(err.Error(), "ignature") {
		t.Errorf("unsigned image in the strict namespace: %v", err)
	}
	for _, e := range readEvents(t, events) {
		if e.Name == "unsigned" {
			t.Errorf("the plugin was told of the refused image's container: %+v", e)
		}
	}
	for _, c := range []struct{ name, want string }{
		{"attack-rootfs", "NRI adjustment refused: a mount at \"/\" would replace the root filesystem"},
		{"attack-mountns", "NRI adjustment refused: changing the mount namespace"},
		{"attack-decision", `NRI adjustment refused: annotation "io.crivet.image.verified" is crivet's own`},
		// CDI devices are resolved from the node's spec files, as a
		// request's are: one the node does not have fails the create.
		{"attack-cdi", "unknown CDI device: vendor.com/device=unverified"},
	} {
		err := create(c.name, signed.Ref)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: create answered %v; want a refusal naming %q", c.name, err, c.want)
		}
	}
	ctrs, err := rc.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs.Containers) != 0 {
		t.Errorf("refused creates left containers: %v", ctrs.Containers)
	}
	if bundles, _ := os.ReadDir(filepath.Join(n.runRoot(), "bundles")); len(bundles) != len(podBundles) {
		t.Errorf("refused creates left bundles: %d, the pod had %d", len(bundles), len(podBundles))
	}
	// The plugin is not at fault for asking, so it stays, and a container
	// it leaves alone runs the verified image.
	if !n.pluginListed("50-hostile") {
		t.Error("the hostile plugin was dropped")
	}
	ctrID := firstLine(n.mustCrictl("create", podID, n.ctrJSON("plain", signed.Ref, signed.Ref, nil), pod))
	n.mustCrictl("start", ctrID)
	if got := n.exec(ctrID, "test -e /unsigned && echo unsigned || echo signed"); got != "signed" {
		t.Errorf("plain container runs the %s image", got)
	}
	// Each attack reached the plugin (so the refusal was crivet's).
	var attacked []string
	for _, e := range readEvents(t, events) {
		if e.Event == "CreateContainer" && strings.HasPrefix(e.Name, "attack-") {
			attacked = append(attacked, e.Name)
		}
	}
	if len(attacked) != 4 {
		t.Errorf("attacks the plugin saw: %v", attacked)
	}
	f := fixtures.ScrapeMetrics(t, "http://"+addr+"/metrics")
	if got := series(f, "crivet_nri_refused_total", "kind=adjustment"); got != 3 {
		t.Errorf("crivet_nri_refused_total{kind=adjustment} = %v, want 3 (the CDI device is not a boundary refusal)", got)
	}
	if t.Failed() {
		t.Logf("crivet log:\n%s", n.log)
	}
}

// A plugin that never answers is dropped after the request timeout and a
// plugin that crashes mid-request is dropped at once; either way the
// container is created, the pod's other steps go on, and crictl info
// and the metrics say what happened.
func TestNRIPluginThatHangsOrCrashesIsDropped(t *testing.T) {
	n := nriNode(t, "2s")
	img := fixtures.PushBusybox(t, n.reg.Ref("nri/busybox:2"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	n.extraArgs = []string{"--metrics-address", addr}
	n.start()
	n.mustCrictl("pull", img.Ref)
	pod := n.podJSON("nri-bad", "default", nil)
	podID := firstLine(n.mustCrictl("runp", pod))

	n.runPlugin("hang", "hang", "", "")
	hung := firstLine(n.mustCrictl("create", podID, n.ctrJSON("after-hang", img.Ref, img.Ref, nil), pod))
	n.mustCrictl("start", hung)
	n.waitPlugin("50-hang", false)

	crash := n.runPlugin("crash", "crash", "", "")
	crashed := firstLine(n.mustCrictl("create", podID, n.ctrJSON("after-crash", img.Ref, img.Ref, nil), pod))
	n.mustCrictl("start", crashed)
	n.waitPlugin("50-crash", false)
	if err := crash.Wait(); err == nil || crash.ProcessState.ExitCode() != 3 {
		t.Errorf("crash plugin: %v", err)
	}

	for _, id := range []string{hung, crashed} {
		if got := n.exec(id, "echo running"); got != "running" {
			t.Errorf("container %s: %q", id, got)
		}
	}
	n.mustCrictl("stopp", podID)
	n.mustCrictl("rmp", podID)

	f := fixtures.ScrapeMetrics(t, "http://"+addr+"/metrics")
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"plugin=50-hang", "event=CreateContainer", "result=error"}, 1},
		{[]string{"plugin=50-crash", "event=CreateContainer", "result=error"}, 1},
	} {
		if got := series(f, "crivet_nri_plugin_calls_total", c.labels...); got != c.want {
			t.Errorf("crivet_nri_plugin_calls_total{%s} = %v, want %v", strings.Join(c.labels, ","), got, c.want)
		}
	}
	if got := series(f, "crivet_nri_plugins"); got != 0 {
		t.Errorf("crivet_nri_plugins = %v, want 0", got)
	}
	if t.Failed() {
		t.Logf("crivet log:\n%s", n.log)
	}
}
