package lifecycle

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/checkpoint"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// In-memory fakes of deps.go's interfaces and of Plugins, sharing one
// call log so a test can say in which order the lifecycle did things.
// They keep the state the real services keep (records with phases, runc
// states, storage containers, image mounts), fail a named call when told
// to, and answer with the real packages' sentinel errors. The real
// services run the same lifecycle in test/e2e (create, undo, kill -9
// recovery), which is what keeps these fakes honest.

type calls struct {
	mu  sync.Mutex
	log []string
	// fail makes the named call ("rt.Create", "images.MountImage") fail
	// with this error, or only with these arguments ("rt.Delete ctr1").
	fail map[string]error
	// block, when set for a call, is waited on inside it (after the call
	// is logged), so a test can hold a step while another runs.
	block map[string]chan struct{}
	// entered is told of each blocked call once it is inside.
	entered chan string
}

// call logs one call and says whether (and with what) it fails.
func (c *calls) call(name string, args ...any) error {
	c.mu.Lock()
	line := name
	for _, a := range args {
		line += " " + fmt.Sprint(a)
	}
	c.log = append(c.log, line)
	err, ok := c.fail[line] // this call with these arguments, else any
	if !ok {
		err = c.fail[name]
	}
	ch := c.block[name]
	c.mu.Unlock()
	if ch != nil {
		if c.entered != nil {
			c.entered <- name
		}
		<-ch
	}
	return err
}

func (c *calls) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// only the calls whose name starts with prefix.
func (c *calls) only(prefix string) []string {
	var out []string
	for _, l := range c.got() {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func (c *calls) failOn(name string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail == nil {
		c.fail = map[string]error{}
	}
	c.fail[name] = err
}

// fakeImages is the image store: images, admissions, root filesystems
// (real directories, so a spec can be built over them) and image mounts.
type fakeImages struct {
	*calls
	dir      string
	images   []*image.Image
	admitErr map[string]error // by image ID
	admitted []image.AdmitRequest
	rootfs   map[string]string // container ID → path
	mounts   map[string]int    // image ID → mount count
	// checkpoints: images built from a checkpoint archive.
	checkpoints map[string]*checkpoint.Archive
}

func (f *fakeImages) Get(ref string) (*image.Image, error) {
	for _, img := range f.images {
		if img.ID == ref || slices.Contains(img.RepoTags, ref) {
			return img, nil
		}
	}
	return nil, fmt.Errorf("image %q: %w", ref, image.ErrNotFound)
}

func (f *fakeImages) AdmitFor(ctx context.Context, req image.AdmitRequest) (image.Admission, error) {
	if err := f.call("images.AdmitFor", req.Image.ID); err != nil {
		return image.Admission{}, err
	}
	f.admitted = append(f.admitted, req)
	if err := f.admitErr[req.Image.ID]; err != nil {
		return image.Admission{}, err
	}
	return image.Admission{Identity: req.UserRef}, nil
}

func (f *fakeImages) OpenCheckpoint(img *image.Image) (*checkpoint.Archive, func() error, error) {
	if a := f.checkpoints[img.ID]; a != nil {
		return a, func() error { return f.call("images.ReleaseCheckpoint", img.ID) }, nil
	}
	return nil, nil, nil
}

func (f *fakeImages) RunConfig(img *image.Image) (image.RunConfig, error) {
	return image.RunConfig{Cmd: []string{"/bin/sleep", "1d"}}, f.call("images.RunConfig", img.ID)
}

func (f *fakeImages) CreateRootfs(id string, img *image.Image, idmap *image.IDMapping) (string, error) {
	if err := f.call("images.CreateRootfs", id); err != nil {
		return "", err
	}
	path := filepath.Join(f.dir, "rootfs", id)
	if err := os.MkdirAll(path, 0o755); err != nil {
		return "", err
	}
	f.rootfs[id] = path
	return path, nil
}

func (f *fakeImages) RemoveRootfs(id string) error {
	if err := f.call("images.RemoveRootfs", id); err != nil {
		return err
	}
	delete(f.rootfs, id)
	return os.RemoveAll(filepath.Join(f.dir, "rootfs", id))
}

func (f *fakeImages) ListRootfs() ([]string, error) {
	var ids []string
	for id := range f.rootfs {
		ids = append(ids, id)
	}
	return ids, nil
}

func (f *fakeImages) RootfsDiff(id string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("rootfs diff of %s: not in the fake", id)
}

func (f *fakeImages) ApplyRootfsDiff(string, io.Reader, []string) error {
	return fmt.Errorf("apply rootfs diff: not in the fake")
}

func (f *fakeImages) MountImage(img *image.Image) (string, error) {
	if err := f.call("images.MountImage", img.ID); err != nil {
		return "", err
	}
	f.mounts[img.ID]++
	path := filepath.Join(f.dir, "mounts", strings.TrimPrefix(img.ID, "sha256:"))
	return path, os.MkdirAll(path, 0o755)
}

func (f *fakeImages) UnmountImage(id string) error {
	if err := f.call("images.UnmountImage", id); err != nil {
		return err
	}
	if f.mounts[id] == 0 {
		return fmt.Errorf("image %s is not mounted", id)
	}
	f.mounts[id]--
	if f.mounts[id] == 0 {
		delete(f.mounts, id)
	}
	return nil
}

func (f *fakeImages) ReconcileImageMounts(want map[string]int) ([]string, error) {
	var fixed []string
	for id, n := range f.mounts {
		if want[id] != n {
			fixed = append(fixed, id)
			if want[id] == 0 {
				delete(f.mounts, id)
			} else {
				f.mounts[id] = want[id]
			}
		}
	}
	return fixed, nil
}

// fakeRecords keeps pod and container records with their phases, as
// sandbox.Manager does: a Creating container record is stored but not
// found by ID (only start-up sees it, through Containers).
type fakeRecords struct {
	*calls
	dir        string
	pods       map[string]*sandbox.Pod
	containers map[string]*sandbox.Container
	names      map[string]string
	pending    map[string]bool
	n          int
}

func (f *fakeRecords) Get(id string) (*sandbox.Pod, error) {
	p, ok := f.pods[id]
	if !ok || f.pending[id] {
		return nil, fmt.Errorf("%q: %w", id, sandbox.ErrNotFound)
	}
	c := *p
	return &c, nil
}

func (f *fakeRecords) List() []*sandbox.Pod {
	var out []*sandbox.Pod
	for _, p := range f.pods {
		c := *p
		out = append(out, &c)
	}
	return out
}

func (f *fakeRecords) GetContainer(id string) (*sandbox.Container, error) {
	c, ok := f.containers[id]
	if !ok || c.Phase == sandbox.Creating {
		return nil, fmt.Errorf("%q: %w", id, sandbox.ErrContainerNotFound)
	}
	cc := *c
	return &cc, nil
}

func (f *fakeRecords) Containers(podID string) []*sandbox.Container {
	var out []*sandbox.Container
	for _, c := range f.containers {
		if podID == "" || c.PodID == podID {
			cc := *c
			out = append(out, &cc)
		}
	}
	slices.SortFunc(out, func(a, b *sandbox.Container) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (f *fakeRecords) BeginPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (*sandbox.Pod, error) {
	f.n++
	id := fmt.Sprintf("pod%d", f.n)
	if err := f.call("pods.BeginPod", id); err != nil {
		return nil, err
	}
	p := &sandbox.Pod{ID: id, Config: cfg, RuntimeHandler: handler, State: sandbox.Ready, Phase: sandbox.Creating,
		Dir: filepath.Join(f.dir, "pods", id)}
	f.pods[id] = p
	f.pending[id] = true
	c := *p
	return &c, nil
}

func (f *fakeRecords) CommitPod(p *sandbox.Pod) (*sandbox.Pod, error) {
	if err := f.call("pods.CommitPod", p.ID); err != nil {
		return nil, err
	}
	c := *p
	c.Phase = sandbox.Created
	f.pods[p.ID] = &c
	delete(f.pending, p.ID)
	out := c
	return &out, nil
}

func (f *fakeRecords) AbortPod(ctx context.Context, p *sandbox.Pod) {
	_ = f.call("pods.AbortPod", p.ID)
	delete(f.pods, p.ID)
	delete(f.pending, p.ID)
}

func (f *fakeRecords) Update(id string, fn func(*sandbox.Pod)) error {
	p, ok := f.pods[id]
	if !ok {
		return fmt.Errorf("%q: %w", id, sandbox.ErrNotFound)
	}
	c := *p
	fn(&c)
	f.pods[id] = &c
	return nil
}

func (f *fakeRecords) MarkRemoving(id string) error {
	if err := f.call("pods.MarkRemoving", id); err != nil {
		return err
	}
	return f.Update(id, func(p *sandbox.Pod) { p.Phase = sandbox.Removing })
}

func (f *fakeRecords) Stop(ctx context.Context, id string) error {
	if err := f.call("pods.Stop", id); err != nil {
		return err
	}
	return f.Update(id, func(p *sandbox.Pod) { p.State = sandbox.NotReady })
}

func (f *fakeRecords) Remove(ctx context.Context, id string) error {
	if err := f.call("pods.Remove", id); err != nil {
		return err
	}
	delete(f.pods, id)
	return nil
}

func (f *fakeRecords) RemoveOrphanDirs(ctx context.Context) ([]string, error) { return nil, nil }
func (f *fakeRecords) EndRecovery()                                           { _ = f.call("pods.EndRecovery") }

func (f *fakeRecords) ReserveContainer(pod *sandbox.Pod, cfg *runtimeapi.ContainerConfig) (string, func(), error) {
	key := pod.ID + "/" + cfg.GetMetadata().GetName()
	if other, ok := f.names[key]; ok {
		return "", nil, fmt.Errorf("container %s: %w by %s", key, sandbox.ErrContainerNameReserved, other)
	}
	f.n++
	id := fmt.Sprintf("ctr%d", f.n)
	f.names[key] = id
	return id, func() { delete(f.names, key) }, nil
}

func (f *fakeRecords) BeginContainer(c *sandbox.Container) error {
	if err := f.call("pods.BeginContainer", c.ID); err != nil {
		return err
	}
	cc := *c
	cc.Phase = sandbox.Creating
	f.containers[c.ID] = &cc
	return nil
}

func (f *fakeRecords) AddContainer(c *sandbox.Container) error {
	if err := f.call("pods.AddContainer", c.ID); err != nil {
		return err
	}
	cc := *c
	cc.Phase = sandbox.Created
	f.containers[c.ID] = &cc
	return nil
}

func (f *fakeRecords) UpdateContainer(id string, fn func(*sandbox.Container)) error {
	if err := f.call("pods.UpdateContainer", id); err != nil {
		return err
	}
	c, ok := f.containers[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, sandbox.ErrContainerNotFound)
	}
	cc := *c
	fn(&cc)
	f.containers[id] = &cc
	return nil
}

func (f *fakeRecords) RemoveContainer(id string) error {
	if err := f.call("pods.RemoveContainer", id); err != nil {
		return err
	}
	if c, ok := f.containers[id]; ok {
		for k, v := range f.names {
			if v == c.ID {
				delete(f.names, k)
			}
		}
	}
	delete(f.containers, id)
	return nil
}

// fakeProcesses is runc and the monitors: one state per container ID.
type fakeProcesses struct {
	*calls
	states  map[string]runtime.Status
	updates map[string]*specs.LinuxResources
	exits   chan string
}

func (f *fakeProcesses) Handler(name string) (runtime.HandlerInfo, error) {
	if name != "" && name != "runc" {
		return runtime.HandlerInfo{}, fmt.Errorf("runtime handler %q: %w", name, runtime.ErrInvalidArgument)
	}
	return runtime.HandlerInfo{Name: "runc", Runc: "/fake/runc", Version: "1.5.3",
		Features: runtime.Features{RecursiveReadOnlyMounts: true, IDMappedMounts: true}}, nil
}

func (f *fakeProcesses) Create(ctx context.Context, o runtime.CreateOptions) error {
	if err := f.call("rt.Create", o.ID); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(o.Bundle, "config.json")); err != nil {
		return fmt.Errorf("runc create %s: no bundle: %w", o.ID, err)
	}
	f.states[o.ID] = runtime.Status{State: runtime.StateCreated, Pid: 100}
	return nil
}

func (f *fakeProcesses) Start(ctx context.Context, id string) error {
	if err := f.call("rt.Start", id); err != nil {
		return err
	}
	st, ok := f.states[id]
	if !ok {
		return fmt.Errorf("start %s: %w", id, runtime.ErrNotFound)
	}
	st.State = runtime.StateRunning
	f.states[id] = st
	return nil
}

func (f *fakeProcesses) Status(ctx context.Context, id string) (runtime.Status, error) {
	st, ok := f.states[id]
	if !ok {
		return runtime.Status{}, fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	return st, nil
}

func (f *fakeProcesses) Stop(ctx context.Context, id string, sig syscall.Signal, timeout time.Duration) error {
	if err := f.call("rt.Stop", id, sig); err != nil {
		return err
	}
	st, ok := f.states[id]
	if !ok {
		return fmt.Errorf("stop %s: %w", id, runtime.ErrNotFound)
	}
	st.State, st.ExitCode = runtime.StateExited, 143
	f.states[id] = st
	return nil
}

func (f *fakeProcesses) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	if err := f.call("rt.Update", id); err != nil {
		return err
	}
	f.updates[id] = res
	return nil
}

func (f *fakeProcesses) Checkpoint(ctx context.Context, id string, o runtime.CheckpointOptions) error {
	return f.call("rt.Checkpoint", id)
}

func (f *fakeProcesses) Release(ctx context.Context, id string) error {
	return f.call("rt.Release", id)
}

func (f *fakeProcesses) Delete(ctx context.Context, id string) error {
	if err := f.call("rt.Delete", id); err != nil {
		return err
	}
	delete(f.states, id)
	return nil
}

func (f *fakeProcesses) List() ([]string, error) {
	var ids []string
	for id := range f.states {
		ids = append(ids, id)
	}
	return ids, nil
}

func (f *fakeProcesses) WatchExits(ctx context.Context) (<-chan string, error) { return f.exits, nil }

// fakePlugins records what plugins are told, in the shared log.
type fakePlugins struct {
	*calls
	memLimit int64 // UpdateContainer sets this memory limit, if not 0
}

func (f *fakePlugins) RunPod(ctx context.Context, p *sandbox.Pod) error {
	return f.call("plugins.RunPod", p.ID)
}
func (f *fakePlugins) StopPod(ctx context.Context, p *sandbox.Pod) {
	_ = f.call("plugins.StopPod", p.ID)
}
func (f *fakePlugins) RemovePod(ctx context.Context, p *sandbox.Pod) {
	_ = f.call("plugins.RemovePod", p.ID)
}
func (f *fakePlugins) UpdatePod(ctx context.Context, p *sandbox.Pod, overhead, res *specs.LinuxResources) error {
	return f.call("plugins.UpdatePod", p.ID)
}
func (f *fakePlugins) PostUpdatePod(ctx context.Context, p *sandbox.Pod) {
	_ = f.call("plugins.PostUpdatePod", p.ID)
}
func (f *fakePlugins) CreateContainer(ctx context.Context, p *sandbox.Pod, c *sandbox.Container, sp *specs.Spec) error {
	return f.call("plugins.CreateContainer", c.ID)
}
func (f *fakePlugins) PostCreateContainer(ctx context.Context, c *sandbox.Container) {
	_ = f.call("plugins.PostCreateContainer", c.ID)
}
func (f *fakePlugins) StartContainer(ctx context.Context, c *sandbox.Container) error {
	return f.call("plugins.StartContainer", c.ID)
}
func (f *fakePlugins) PostStartContainer(ctx context.Context, c *sandbox.Container) {
	_ = f.call("plugins.PostStartContainer", c.ID)
}
func (f *fakePlugins) UpdateContainer(ctx context.Context, c *sandbox.Container, res *specs.LinuxResources) (*specs.LinuxResources, error) {
	if err := f.call("plugins.UpdateContainer", c.ID); err != nil {
		return nil, err
	}
	if f.memLimit != 0 {
		out := *res
		out.Memory = &specs.LinuxMemory{Limit: &f.memLimit}
		return &out, nil
	}
	return res, nil
}
func (f *fakePlugins) PostUpdateContainer(ctx context.Context, c *sandbox.Container) {
	_ = f.call("plugins.PostUpdateContainer", c.ID)
}
func (f *fakePlugins) StopContainer(ctx context.Context, c *sandbox.Container) {
	_ = f.call("plugins.StopContainer", c.ID)
}
func (f *fakePlugins) RemoveContainer(ctx context.Context, c *sandbox.Container) {
	_ = f.call("plugins.RemoveContainer", c.ID)
}
func (f *fakePlugins) HoldSync() func() { return func() {} }

// env is a Manager over the fakes, with a real run root for bundles.
type env struct {
	*calls
	m       *Manager
	images  *fakeImages
	pods    *fakeRecords
	rt      *fakeProcesses
	plugins *fakePlugins
	runRoot string
	events  <-chan Event
}

var (
	appImage = &image.Image{ID: "sha256:app", RepoTags: []string{"reg/app:1"}}
	volA     = &image.Image{ID: "sha256:vola", RepoTags: []string{"reg/a:1"}}
	volB     = &image.Image{ID: "sha256:volb", RepoTags: []string{"reg/b:2"}}
)

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	c := &calls{}
	e := &env{calls: c, runRoot: filepath.Join(dir, "run")}
	e.images = &fakeImages{calls: c, dir: dir, images: []*image.Image{appImage, volA, volB},
		rootfs: map[string]string{}, mounts: map[string]int{}, checkpoints: map[string]*checkpoint.Archive{}}
	e.pods = &fakeRecords{calls: c, dir: dir, pods: map[string]*sandbox.Pod{}, containers: map[string]*sandbox.Container{},
		names: map[string]string{}, pending: map[string]bool{}}
	e.rt = &fakeProcesses{calls: c, states: map[string]runtime.Status{}, updates: map[string]*specs.LinuxResources{}, exits: make(chan string)}
	e.plugins = &fakePlugins{calls: c}
	e.m = New(Config{Images: e.images, Pods: e.pods, Runtime: e.rt, RunRoot: e.runRoot, PauseBinary: "/fake/pause",
		Plugins: e.plugins, Logger: slog.New(slog.DiscardHandler)})
	ch, cancel := e.m.Subscribe()
	t.Cleanup(cancel)
	e.events = ch
	return e
}

// readyPod stores a ready pod of namespace ns, as RunPod would leave it.
func (e *env) readyPod(id, ns string) *sandbox.Pod {
	p := &sandbox.Pod{ID: id, State: sandbox.Ready, Phase: sandbox.Created, Dir: filepath.Join(e.runRoot, "pods", id),
		Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: id, Namespace: ns, Uid: id}}}
	e.pods.pods[id] = p
	return p
}

func ctrConfig(name string, mounts ...*runtimeapi.Mount) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "sha256:app", UserSpecifiedImage: "reg/app:1"},
		Mounts:   mounts,
		// Its own PID namespace (POD, the enum's zero, needs an infra).
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
	}
}

func imageMount(path, ref, userRef string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: path, Readonly: true, Image: &runtimeapi.ImageSpec{Image: ref, UserSpecifiedImage: userRef}}
}

// nextEvent is the next event published, if one is waiting.
func (e *env) nextEvent() (Event, bool) {
	select {
	case ev := <-e.events:
		return ev, true
	default:
		return Event{}, false
	}
}

// eventTypes drains the published events' types.
func (e *env) eventTypes() []string {
	var out []string
	for {
		ev, ok := e.nextEvent()
		if !ok {
			return out
		}
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(ev.Type.String(), "CONTAINER_"), "_EVENT")+" "+ev.ContainerID)
	}
}

// nothingLeft fails unless no part of container id is left anywhere.
func (e *env) nothingLeft(t *testing.T, id string) {
	t.Helper()
	if _, ok := e.pods.containers[id]; ok {
		t.Errorf("record of %s left: %+v", id, e.pods.containers[id])
	}
	if _, ok := e.rt.states[id]; ok {
		t.Errorf("runc state of %s left", id)
	}
	if _, ok := e.images.rootfs[id]; ok {
		t.Errorf("storage container of %s left", id)
	}
	if len(e.images.mounts) != 0 {
		t.Errorf("image mounts left: %v", e.images.mounts)
	}
	if _, err := os.Stat(e.m.bundle(id)); !os.IsNotExist(err) {
		t.Errorf("bundle of %s left (%v)", id, err)
	}
}
