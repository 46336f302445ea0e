package nri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	"github.com/containerd/nri/pkg/stub"
	"github.com/crivet/crivet/oci/cdi"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCheckAdjustmentRefusesWhatWouldReplaceTheImage(t *testing.T) {
	for _, c := range []struct {
		name string
		adj  func(a *api.ContainerAdjustment)
		want string // "" = allowed
	}{
		{"env, mounts, devices, resources", func(a *api.ContainerAdjustment) {
			a.AddEnv("A", "b")
			a.AddMount(&api.Mount{Destination: "/data", Source: "/srv", Type: "bind"})
			a.AddDevice(&api.LinuxDevice{Path: "/dev/x", Type: "c", Major: 1, Minor: 3})
			a.SetLinuxMemoryLimit(1 << 20)
			a.AddAnnotation("example.com/x", "y")
			a.AddOrReplaceNamespace(&api.LinuxNamespace{Type: "network", Path: "/proc/1/ns/net"})
		}, ""},
		{"removing a mount", func(a *api.ContainerAdjustment) { a.RemoveMount("/etc/hosts") }, ""},
		{"mount at /", func(a *api.ContainerAdjustment) {
			a.AddMount(&api.Mount{Destination: "/", Source: "/other", Type: "bind"})
		}, "replace the root filesystem"},
		{"mount at /.", func(a *api.ContainerAdjustment) {
			a.AddMount(&api.Mount{Destination: "/usr/..", Source: "/other", Type: "bind"})
		}, "replace the root filesystem"},
		{"relative mount", func(a *api.ContainerAdjustment) {
			a.AddMount(&api.Mount{Destination: ".", Source: "/other", Type: "bind"})
		}, "replace the root filesystem"},
		{"mount namespace", func(a *api.ContainerAdjustment) {
			a.AddOrReplaceNamespace(&api.LinuxNamespace{Type: "mount", Path: "/proc/1/ns/mnt"})
		}, "mount namespace"},
		{"no mount namespace", func(a *api.ContainerAdjustment) {
			a.RemoveNamespace(&api.LinuxNamespace{Type: "mount"})
		}, "mount namespace"},
		{"user namespace", func(a *api.ContainerAdjustment) {
			a.AddOrReplaceNamespace(&api.LinuxNamespace{Type: "user", Path: "/proc/1/ns/user"})
		}, "user namespace"},
		{"crivet's annotation", func(a *api.ContainerAdjustment) { a.AddAnnotation("io.crivet.decision", "allowed") }, "crivet's own"},
		{"removing crivet's annotation", func(a *api.ContainerAdjustment) { a.RemoveAnnotation("io.crivet.decision") }, "crivet's own"},
		{"CDI", func(a *api.ContainerAdjustment) { a.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/gpu=0"}) }, "CDI"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := &api.ContainerAdjustment{}
			c.adj(a)
			err := checkAdjustment(a, false)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a refusal naming %q", err, c.want)
			}
		})
	}
}

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Root:    &specs.Root{Path: "/rootfs", Readonly: false},
		Process: &specs.Process{Args: []string{"sleep", "1"}, Env: []string{"PATH=/bin", "KEEP=1", "DROP=1"}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, {Destination: "/etc/hosts", Type: "bind", Source: "/h"}},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: "/n"}}},
	}
}

// The adjustment code NRI ships, run over crivet's spec editor.
func TestAdjustmentIsAppliedToCrivetsSpec(t *testing.T) {
	sp := baseSpec()
	a := &api.ContainerAdjustment{}
	a.AddEnv("NEW", "v")
	a.AddEnv("KEEP", "2")
	a.RemoveEnv("DROP")
	a.AddMount(&api.Mount{Destination: "/data", Source: "/srv", Type: "bind", Options: []string{"rbind", "ro"}})
	a.RemoveMount("/etc/hosts")
	a.AddDevice(&api.LinuxDevice{Path: "/dev/x", Type: "c", Major: 1, Minor: 3})
	a.SetLinuxMemoryLimit(64 << 20)
	a.SetLinuxCPUShares(512)
	a.SetLinuxCPUSetCPUs("0")
	a.AddRlimit("RLIMIT_NOFILE", 10, 5)
	a.AddAnnotation("example.com/a", "b")
	a.AddHooks(&api.Hooks{Poststart: []*api.Hook{{Path: "/bin/true"}}})
	if err := checkAdjustment(a, false); err != nil {
		t.Fatal(err)
	}
	root := *sp.Root
	if err := nrigen.SpecGenerator(specEdit{sp: sp}).Adjust(a); err != nil {
		t.Fatal(err)
	}
	if err := checkRootKept(&root, sp); err != nil {
		t.Fatal(err)
	}
	if got, want := sp.Process.Env, []string{"PATH=/bin", "KEEP=2", "NEW=v"}; !slices.Equal(got, want) {
		t.Errorf("env %v, want %v", got, want)
	}
	var dests []string
	for _, m := range sp.Mounts {
		dests = append(dests, m.Destination)
	}
	if want := []string{"/data", "/proc"}; !slices.Equal(dests, want) {
		t.Errorf("mounts %v, want %v", dests, want)
	}
	if len(sp.Linux.Devices) != 1 || sp.Linux.Devices[0].Path != "/dev/x" || sp.Linux.Devices[0].Major != 1 {
		t.Errorf("devices %+v", sp.Linux.Devices)
	}
	if r := sp.Linux.Resources; r == nil || *r.Memory.Limit != 64<<20 || *r.CPU.Shares != 512 || r.CPU.Cpus != "0" || len(r.Devices) != 1 || !r.Devices[0].Allow {
		t.Errorf("resources %+v", r)
	}
	if len(sp.Process.Rlimits) != 1 || sp.Process.Rlimits[0].Hard != 10 {
		t.Errorf("rlimits %+v", sp.Process.Rlimits)
	}
	if sp.Annotations["example.com/a"] != "b" || len(sp.Hooks.Poststart) != 1 {
		t.Errorf("annotations %v hooks %+v", sp.Annotations, sp.Hooks)
	}
}

func TestRootMustBeKept(t *testing.T) {
	sp := baseSpec()
	root := *sp.Root
	sp.Root.Path = "/elsewhere"
	if err := checkRootKept(&root, sp); !errors.Is(err, ErrRefused) {
		t.Errorf("changed root: %v", err)
	}
	sp = baseSpec()
	sp.Mounts = append(sp.Mounts, specs.Mount{Destination: "//", Source: "/x", Type: "bind"})
	if err := checkRootKept(&root, sp); !errors.Is(err, ErrRefused) {
		t.Errorf("mount over /: %v", err)
	}
}

type fakePods struct {
	pods []*sandbox.Pod
	ctrs []*sandbox.Container
}

func (f *fakePods) Get(id string) (*sandbox.Pod, error) {
	for _, p := range f.pods {
		if p.ID == id {
			return p, nil
		}
	}
	return nil, sandbox.ErrNotFound
}
func (f *fakePods) List() []*sandbox.Pod { return f.pods }
func (f *fakePods) Containers(podID string) []*sandbox.Container {
	var out []*sandbox.Container
	for _, c := range f.ctrs {
		if c.PodID == podID {
			out = append(out, c)
		}
	}
	return out
}
func (f *fakePods) GetContainer(id string) (*sandbox.Container, error) {
	for _, c := range f.ctrs {
		if c.ID == id {
			return c, nil
		}
	}
	return nil, sandbox.ErrContainerNotFound
}

type fakeRuntime struct{}

func (fakeRuntime) Status(context.Context, string) (runtime.Status, error) {
	return runtime.Status{State: runtime.StateRunning, Pid: 42}, nil
}
func (fakeRuntime) Update(context.Context, string, *specs.LinuxResources) error { return nil }

type syncPlugin struct{ synced chan []string }

func (p *syncPlugin) RunPodSandbox(context.Context, *api.PodSandbox) error { return nil }

func (p *syncPlugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	var ids []string
	for _, c := range ctrs {
		ids = append(ids, c.GetId()+"/"+c.GetName()+"/"+c.GetState().String())
	}
	p.synced <- ids
	return nil, nil
}

// A real plugin (NRI's stub) over the socket: synchronized with the
// records, listed while connected, gone from the list once it goes. This
// also holds the library's log wording the list relies on (track.go).
func TestPluginIsListedWhileConnected(t *testing.T) {
	dir := t.TempDir()
	pods := &fakePods{
		pods: []*sandbox.Pod{{ID: "pod1", Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}}}},
		ctrs: []*sandbox.Container{{ID: "ctr1", PodID: "pod1", Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}}},
	}
	n, err := New(Config{SocketPath: filepath.Join(dir, "nri.sock"), PluginPath: filepath.Join(dir, "plugins"), PluginConfigPath: filepath.Join(dir, "conf"),
		RuntimeName: "crivet", RuntimeVersion: "test", Pods: pods, Runtime: fakeRuntime{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	p := &syncPlugin{synced: make(chan []string, 1)}
	s, err := stub.New(p, stub.WithSocketPath(filepath.Join(dir, "nri.sock")), stub.WithPluginName("lister"), stub.WithPluginIdx("20"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := <-p.synced; !slices.Equal(got, []string{"ctr1/c/CONTAINER_RUNNING"}) {
		t.Errorf("synchronized with %v", got)
	}
	waitListed := func(want bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			ps := n.Info().(Info).Plugins
			if (len(ps) == 1 && ps[0].Name == "20-lister") == want && (want || len(ps) == 0) {
				return
			}
		}
		t.Fatalf("plugin listed: %+v, want listed=%v", n.Info(), want)
	}
	waitListed(true)
	s.Stop()
	waitListed(false)
}

// Every spec crivet makes converts, with or without its optional parts.
func TestContainerConvertsSparseSpecs(t *testing.T) {
	c := &sandbox.Container{ID: "c", PodID: "p", Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "n"}}, ImageRef: "reg/img:1", ImageID: "sha256:x"}
	for _, sp := range []*specs.Spec{{}, {Process: &specs.Process{}}, {Linux: &specs.Linux{}}, baseSpec()} {
		got := container(c, sp, nil)
		if got.GetName() != "n" || got.GetImage().GetName() != "reg/img:1" {
			t.Errorf("%+v", got)
		}
	}
	if got := container(c, nil, &runtime.Status{State: runtime.StateExited, ExitCode: 1}); got.GetState() != api.ContainerState_CONTAINER_STOPPED || got.GetExitCode() != 1 {
		t.Errorf("%+v", got)
	}
}

// A plugin's update changes only what it set.
func TestOverlayKeepsWhatPluginsDidNotSet(t *testing.T) {
	quota, period, limit, plug := int64(50000), uint64(100000), int64(256<<20), int64(96<<20)
	res := &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}, Memory: &specs.LinuxMemory{Limit: &limit}}
	u := &api.ContainerUpdate{}
	u.SetLinuxMemoryLimit(plug)
	got := overlay(res, u.GetLinux().GetResources().ToOCI())
	if *got.Memory.Limit != plug || *got.CPU.Quota != quota || *got.CPU.Period != period {
		t.Errorf("overlay: memory %d cpu %+v", *got.Memory.Limit, got.CPU)
	}
	if *res.Memory.Limit != limit {
		t.Error("overlay changed the request")
	}
}

// recorder is a real plugin (NRI's stub) recording container events.
type recorder struct {
	syncGate chan struct{} // closed to let Synchronize answer (nil: at once)
	synced   chan struct{}
	events   chan string
	// updatePodErr is UpdatePodSandbox's answer.
	updatePodErr error
}

func (r *recorder) UpdatePodSandbox(_ context.Context, pod *api.PodSandbox, overhead, res *api.LinuxResources) error {
	r.events <- fmt.Sprintf("UpdatePodSandbox %s memory=%d overhead=%v", pod.GetId(), res.GetMemory().GetLimit().GetValue(), overhead != nil)
	return r.updatePodErr
}
func (r *recorder) PostUpdatePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	r.events <- "PostUpdatePodSandbox " + pod.GetId()
	return nil
}

func (r *recorder) Synchronize(context.Context, []*api.PodSandbox, []*api.Container) ([]*api.ContainerUpdate, error) {
	close(r.synced)
	if r.syncGate != nil {
		<-r.syncGate
	}
	return nil, nil
}
func (r *recorder) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	r.events <- "CreateContainer " + c.GetId()
	return nil, nil, nil
}
func (r *recorder) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	r.events <- "StopContainer " + c.GetId()
	return nil, nil
}
func (r *recorder) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	r.events <- "RemoveContainer " + c.GetId()
	return nil
}

func startNRI(t *testing.T, pods *fakePods, devices ...CDI) (*NRI, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{SocketPath: filepath.Join(dir, "nri.sock"), PluginPath: filepath.Join(dir, "plugins"), PluginConfigPath: filepath.Join(dir, "conf"),
		RuntimeName: "crivet", RuntimeVersion: "test", Pods: pods, Runtime: fakeRuntime{}, Logger: slog.New(slog.DiscardHandler)}
	for _, d := range devices {
		cfg.CDI = d
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n, filepath.Join(dir, "nri.sock")
}

// connect starts plugin p on n's socket as 10-name and returns once n has
// registered it (its synchronization, which closes synced, is over).
func connect(t *testing.T, n *NRI, sock string, p any, name string, synced <-chan struct{}) {
	t.Helper()
	s, err := stub.New(p, stub.WithSocketPath(sock), stub.WithPluginName(name), stub.WithPluginIdx("10"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	<-synced
	n.HoldSync()()
}

// A container created while a plugin is being synchronized is not lost:
// the create waits, and the plugin hears of it once it is registered.
func TestCreateDuringSynchronizationReachesThePlugin(t *testing.T) {
	pod := &sandbox.Pod{ID: "pod1", Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}}}
	n, sock := startNRI(t, &fakePods{pods: []*sandbox.Pod{pod}})
	r := &recorder{syncGate: make(chan struct{}), synced: make(chan struct{}), events: make(chan string, 10)}
	s, err := stub.New(r, stub.WithSocketPath(sock), stub.WithPluginName("late"), stub.WithPluginIdx("10"))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- s.Start(context.Background()) }()
	defer s.Stop()
	<-r.synced // the plugin is inside Synchronize now
	created := make(chan error, 1)
	go func() {
		release := n.HoldSync()
		defer release()
		c := &sandbox.Container{ID: "ctr1", PodID: "pod1", Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}}
		created <- n.CreateContainer(context.Background(), pod, c, baseSpec())
	}()
	select {
	case err := <-created:
		t.Fatalf("create went ahead while the plugin was synchronizing: %v", err)
	case <-time.After(200 * time.Millisecond): // not a timing assertion: it must not have finished by now, whatever the speed
	}
	close(r.syncGate)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if got := <-r.events; got != "CreateContainer ctr1" {
		t.Errorf("plugin got %q", got)
	}
}

// A container's stop is told once, however many times it is seen, and
// never after its removal.
func TestStopIsToldOnceAndNeverAfterRemove(t *testing.T) {
	pod := &sandbox.Pod{ID: "pod1", Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}}}
	c := &sandbox.Container{ID: "ctr1", PodID: "pod1", Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}}
	n, sock := startNRI(t, &fakePods{pods: []*sandbox.Pod{pod}, ctrs: []*sandbox.Container{c}})
	r := &recorder{synced: make(chan struct{}), events: make(chan string, 10)}
	connect(t, n, sock, r, "rec", r.synced)
	ctx := context.Background()
	n.StopContainer(ctx, c) // the request
	n.StopContainer(ctx, c) // the exit watcher
	n.RemoveContainer(ctx, c)
	n.StopContainer(ctx, c) // a late exit report
	n.RemoveContainer(ctx, c)
	var got []string
	for len(r.events) > 0 || len(got) < 2 {
		got = append(got, <-r.events)
	}
	if want := []string{"StopContainer ctr1", "RemoveContainer ctr1"}; !slices.Equal(got, want) {
		t.Errorf("plugin got %v, want %v", got, want)
	}
}

// kubelet's pod resize reaches plugins with the pod's new resources, then
// as done; a plugin's refusal is the update's error.
func TestPodUpdateReachesPlugins(t *testing.T) {
	pod := &sandbox.Pod{ID: "pod1", Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}}}
	n, sock := startNRI(t, &fakePods{pods: []*sandbox.Pod{pod}})
	r := &recorder{synced: make(chan struct{}), events: make(chan string, 10)}
	connect(t, n, sock, r, "rec", r.synced)
	limit := int64(512 << 20)
	ctx := context.Background()
	if err := n.UpdatePod(ctx, pod, nil, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	n.PostUpdatePod(ctx, pod)
	got := []string{<-r.events, <-r.events}
	if want := []string{fmt.Sprintf("UpdatePodSandbox pod1 memory=%d overhead=false", limit), "PostUpdatePodSandbox pod1"}; !slices.Equal(got, want) {
		t.Fatalf("plugin got %q, want %q", got, want)
	}
	r.updatePodErr = errors.New("no resize for you")
	if err := n.UpdatePod(ctx, pod, nil, nil); err == nil || !strings.Contains(err.Error(), "no resize for you") {
		t.Fatalf("refused update: %v", err)
	}
}

// cdiPlugin asks for CDI devices at every create (a DRA driver's or a
// device plugin's NRI side does this).
type cdiPlugin struct {
	synced  chan struct{}
	devices []string
}

func (p *cdiPlugin) Synchronize(context.Context, []*api.PodSandbox, []*api.Container) ([]*api.ContainerUpdate, error) {
	close(p.synced)
	return nil, nil
}
func (p *cdiPlugin) CreateContainer(context.Context, *api.PodSandbox, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	a := &api.ContainerAdjustment{}
	for _, d := range p.devices {
		a.AddCDIDevice(&api.CDIDevice{Name: d})
	}
	return a, nil, nil
}

// CDI devices a plugin asks for are resolved from the node's CDI spec
// files (the same registry as a request's cdi_devices) and applied to the
// spec; an unknown one fails the create naming it; a device whose spec
// would mount over the root is refused like any adjustment that does.
func TestCDIDevicesFromAPluginAreInjected(t *testing.T) {
	dir := t.TempDir()
	spec := `cdiVersion: "0.6.0"
kind: crivet.test/dev
devices:
- name: null0
  containerEdits:
    env: ["CRIVET_CDI_DEVICE=null0"]
    deviceNodes:
    - path: /dev/crivet-null0
      hostPath: /dev/null
- name: overroot
  containerEdits:
    mounts:
    - hostPath: /srv
      containerPath: /
`
	if err := os.WriteFile(filepath.Join(dir, "dev.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := cdi.New([]string{dir})
	pod := &sandbox.Pod{ID: "pod1", Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}}}
	for _, c := range []struct {
		device, want string
	}{
		{"crivet.test/dev=null0", ""},
		{"crivet.test/dev=none", "crivet.test/dev=none"},
		{"crivet.test/dev=overroot", "root filesystem"},
	} {
		t.Run(c.device, func(t *testing.T) {
			n, sock := startNRI(t, &fakePods{pods: []*sandbox.Pod{pod}}, reg)
			p := &cdiPlugin{synced: make(chan struct{}), devices: []string{c.device}}
			connect(t, n, sock, p, "cdi", p.synced)
			sp := baseSpec()
			ctr := &sandbox.Container{ID: "ctr1", PodID: "pod1", Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}}
			err := n.CreateContainer(context.Background(), pod, ctr, sp)
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("create: %v, want an error naming %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(sp.Process.Env, "CRIVET_CDI_DEVICE=null0") {
				t.Errorf("env %v lacks the device's", sp.Process.Env)
			}
			var paths []string
			for _, d := range sp.Linux.Devices {
				paths = append(paths, d.Path)
			}
			if !slices.Contains(paths, "/dev/crivet-null0") {
				t.Errorf("devices %v lack /dev/crivet-null0", paths)
			}
		})
	}
	// With CDI off the same request is refused before anything is applied.
	a := &api.ContainerAdjustment{}
	a.AddCDIDevice(&api.CDIDevice{Name: "crivet.test/dev=null0"})
	if err := checkAdjustment(a, false); !errors.Is(err, ErrRefused) {
		t.Fatalf("CDI off: %v", err)
	}
	if err := checkAdjustment(a, true); err != nil {
		t.Fatalf("CDI on: %v", err)
	}
}
