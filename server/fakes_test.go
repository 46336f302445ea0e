package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// In-memory fakes of the deps.go interfaces. Each records the calls it
// gets (method and the ID it was given) so tests can say what a handler
// did and, as importantly, what it did not do. Lookups behave like the
// real services: exact ID, else a unique prefix, else ambiguous or not
// found, with the real packages' sentinel errors.

type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) record(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, fmt.Sprintf(format, args...))
}

func (l *callLog) got() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// byPrefix resolves id among keys as the real managers do.
func byPrefix(keys []string, id string, ambiguous error) (string, bool, error) {
	if slices.Contains(keys, id) {
		return id, true, nil
	}
	var found string
	if id != "" {
		for _, k := range keys {
			if strings.HasPrefix(k, id) {
				if found != "" {
					return "", false, fmt.Errorf("%q: %w", id, ambiguous)
				}
				found = k
			}
		}
	}
	return found, found != "", nil
}

// fakeImages is the image service: images by ID and by each repo tag.
type fakeImages struct {
	callLog
	images    []*image.Image
	getErr    map[string]error // by reference, before lookup
	pullErr   error
	pulled    []image.PullRequest
	removeErr error
	usage     image.Usage
	usageErr  error
	rootfs    map[string]image.LayerUsage // by container ID; absent = error
	graphRoot string
}

func (f *fakeImages) add(imgs ...*image.Image) { f.images = append(f.images, imgs...) }

func (f *fakeImages) Pull(ctx context.Context, req image.PullRequest) (*image.Image, error) {
	f.record("Pull %s", req.Ref)
	f.pulled = append(f.pulled, req)
	if f.pullErr != nil {
		return nil, f.pullErr
	}
	if img, err := f.Get(req.Ref); err == nil {
		return img, nil
	}
	return &image.Image{ID: "sha256:pulled-" + req.Ref, RepoTags: []string{req.Ref}}, nil
}

func (f *fakeImages) Get(ref string) (*image.Image, error) {
	if err := f.getErr[ref]; err != nil {
		return nil, err
	}
	for _, img := range f.images {
		if img.ID == ref || slices.Contains(img.RepoTags, ref) {
			return img, nil
		}
	}
	var ids []string
	for _, img := range f.images {
		ids = append(ids, img.ID)
	}
	id, ok, err := byPrefix(ids, ref, image.ErrAmbiguous)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("image %q: %w", ref, image.ErrNotFound)
	}
	return f.Get(id)
}

func (f *fakeImages) List() ([]*image.Image, error) { return slices.Clone(f.images), nil }

func (f *fakeImages) Remove(ref string) error {
	f.record("Remove %s", ref)
	if f.removeErr != nil {
		return f.removeErr
	}
	img, err := f.Get(ref)
	if err != nil {
		return err
	}
	f.images = slices.DeleteFunc(f.images, func(i *image.Image) bool { return i == img })
	return nil
}

func (f *fakeImages) FsUsage() (image.Usage, error) { return f.usage, f.usageErr }

func (f *fakeImages) RootfsUsage(id string) (image.LayerUsage, error) {
	if v, ok := f.rootfs[id]; ok {
		return v, nil
	}
	return image.LayerUsage{}, fmt.Errorf("rootfs of %s: %w", id, image.ErrNotFound)
}

func (f *fakeImages) GraphRoot() string { return f.graphRoot }

// fakePods holds pod and container records. Get and GetContainer return
// copies as shallow as the real manager's (the Config protos are shared).
type fakePods struct {
	callLog
	pods       []*sandbox.Pod
	containers []*sandbox.Container
	netErr     error
}

func (f *fakePods) Get(id string) (*sandbox.Pod, error) {
	var ids []string
	for _, p := range f.pods {
		ids = append(ids, p.ID)
	}
	id, ok, err := byPrefix(ids, id, sandbox.ErrAmbiguous)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%q: %w", id, sandbox.ErrNotFound)
	}
	for _, p := range f.pods {
		if p.ID == id {
			c := *p
			c.IPs = slices.Clone(p.IPs)
			return &c, nil
		}
	}
	panic("unreachable")
}

func (f *fakePods) List() []*sandbox.Pod {
	out := make([]*sandbox.Pod, 0, len(f.pods))
	for _, p := range f.pods {
		c := *p
		out = append(out, &c)
	}
	return out
}

func (f *fakePods) GetContainer(id string) (*sandbox.Container, error) {
	var ids []string
	for _, c := range f.containers {
		ids = append(ids, c.ID)
	}
	full, ok, err := byPrefix(ids, id, sandbox.ErrAmbiguous)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%q: %w", id, sandbox.ErrContainerNotFound)
	}
	return f.container(full), nil
}

// container is the stored record's shallow copy, as the manager returns.
func (f *fakePods) container(id string) *sandbox.Container {
	for _, c := range f.containers {
		if c.ID == id {
			cc := *c
			return &cc
		}
	}
	return nil
}

func (f *fakePods) Containers(podID string) []*sandbox.Container {
	var out []*sandbox.Container
	for _, c := range f.containers {
		if podID == "" || c.PodID == podID {
			cc := *c
			out = append(out, &cc)
		}
	}
	return out
}

func (f *fakePods) ContainersView(podID string) []*sandbox.Container { return f.Containers(podID) }

func (f *fakePods) NetworkReady() error { return f.netErr }

// fakeLifecycle records every lifecycle call; Subscribe hands out events.
type fakeLifecycle struct {
	callLog
	err          error // returned by every call but Subscribe
	created      []lifecycle.CreateRequest
	updated      []*runtimeapi.LinuxContainerResources
	createdID    string
	stopTimeouts []time.Duration
	runCfgs      []*runtimeapi.PodSandboxConfig
	runHandlers  []string
	events       chan lifecycle.Event
	unsubscribed chan struct{}
}

func (f *fakeLifecycle) CreateContainer(ctx context.Context, req lifecycle.CreateRequest) (*sandbox.Container, error) {
	f.record("CreateContainer %s", req.PodID)
	f.created = append(f.created, req)
	if f.err != nil {
		return nil, f.err
	}
	return &sandbox.Container{ID: f.createdID, PodID: req.PodID, Config: req.Config}, nil
}

func (f *fakeLifecycle) UpdateContainer(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	f.record("UpdateContainer %s", id)
	f.updated = append(f.updated, res)
	return f.err
}

func (f *fakeLifecycle) StartContainer(ctx context.Context, c *sandbox.Container) error {
	f.record("StartContainer %s", c.ID)
	return f.err
}

func (f *fakeLifecycle) StopContainer(ctx context.Context, c *sandbox.Container, timeout time.Duration) error {
	f.record("StopContainer %s", c.ID)
	f.stopTimeouts = append(f.stopTimeouts, timeout)
	return f.err
}

func (f *fakeLifecycle) RemoveContainer(ctx context.Context, c *sandbox.Container) error {
	f.record("RemoveContainer %s", c.ID)
	return f.err
}

func (f *fakeLifecycle) CheckpointContainer(ctx context.Context, c *sandbox.Container, location string) error {
	f.record("CheckpointContainer %s %s", c.ID, location)
	return f.err
}

func (f *fakeLifecycle) RunPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (*sandbox.Pod, error) {
	f.record("RunPod %s", cfg.GetMetadata().GetName())
	f.runCfgs = append(f.runCfgs, cfg)
	f.runHandlers = append(f.runHandlers, handler)
	if f.err != nil {
		return nil, f.err
	}
	return &sandbox.Pod{ID: "pod-new", Config: cfg, RuntimeHandler: handler}, nil
}

func (f *fakeLifecycle) StopPod(ctx context.Context, pod *sandbox.Pod) error {
	f.record("StopPod %s", pod.ID)
	return f.err
}

func (f *fakeLifecycle) UpdatePod(ctx context.Context, id string, overhead, res *runtimeapi.LinuxContainerResources) error {
	f.record("UpdatePod %s", id)
	return f.err
}

func (f *fakeLifecycle) RemovePod(ctx context.Context, pod *sandbox.Pod) error {
	f.record("RemovePod %s", pod.ID)
	return f.err
}

func (f *fakeLifecycle) Subscribe() (<-chan lifecycle.Event, func()) {
	f.record("Subscribe")
	var once sync.Once
	return f.events, func() {
		once.Do(func() {
			f.record("Unsubscribe")
			if f.unsubscribed != nil {
				close(f.unsubscribed)
			}
		})
	}
}

// fakeProcesses answers process state from a table; a container without
// an entry has no process state (runtime.ErrNotFound), as after a reboot.
type fakeProcesses struct {
	callLog
	status    map[string]runtime.Status
	statusErr map[string]error
	execOut   []byte
	execErr   error
	execCmds  [][]string
	execTOs   []time.Duration
	readyErr  error
	updateErr error
}

func (f *fakeProcesses) Status(ctx context.Context, id string) (runtime.Status, error) {
	if err := f.statusErr[id]; err != nil {
		return runtime.Status{}, err
	}
	st, ok := f.status[id]
	if !ok {
		return runtime.Status{}, fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	return st, nil
}

func (f *fakeProcesses) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, int32, error) {
	f.record("ExecSync %s", id)
	f.execCmds = append(f.execCmds, cmd)
	f.execTOs = append(f.execTOs, timeout)
	if f.execErr != nil {
		return nil, nil, 0, f.execErr
	}
	return f.execOut, []byte("err"), 3, nil
}

func (f *fakeProcesses) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	f.record("Exec %s", id)
	return nil
}

func (f *fakeProcesses) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	f.record("Attach %s", id)
	return nil
}

func (f *fakeProcesses) ReopenLog(ctx context.Context, id string) error {
	f.record("ReopenLog %s", id)
	return nil
}

func (f *fakeProcesses) Ready(ctx context.Context) error { return f.readyErr }

// fixture is a criServer over fresh fakes.
type fixture struct {
	s    *criServer
	img  *fakeImages
	pods *fakePods
	lc   *fakeLifecycle
	rt   *fakeProcesses
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		img:  &fakeImages{graphRoot: t.TempDir(), rootfs: map[string]image.LayerUsage{}},
		pods: &fakePods{},
		lc:   &fakeLifecycle{createdID: "ctr-new"},
		rt:   &fakeProcesses{status: map[string]runtime.Status{}},
	}
	f.s = &criServer{images: f.img, pods: f.pods, lc: f.lc, rt: f.rt, info: Info{Version: "test-1"}, log: slog.New(slog.DiscardHandler)}
	return f
}

// at is a fixed creation time, i seconds after a base.
func at(i int) time.Time { return time.Unix(1_700_000_000+int64(i), 0) }

func podConfig(name, ns string, labels map[string]string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: ns, Uid: name + "-uid"},
		Labels:   labels,
	}
}

// addPod stores a Ready pod.
func (f *fixture) addPod(id, ns string, labels map[string]string) *sandbox.Pod {
	p := &sandbox.Pod{ID: id, Config: podConfig("pod-"+id, ns, labels), CreatedAt: at(len(f.pods.pods)), State: sandbox.Ready, RuntimeHandler: defaultHandler}
	f.pods.pods = append(f.pods.pods, p)
	return p
}

// addContainer stores a container of pod in the given process state
// ("" = no process state at all).
func (f *fixture) addContainer(id, podID string, state runtime.State, labels map[string]string) *sandbox.Container {
	c := &sandbox.Container{ID: id, PodID: podID, CreatedAt: at(len(f.pods.containers)), ImageID: "sha256:img",
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c-" + id}, Image: &runtimeapi.ImageSpec{Image: "reg/app:1"}, Labels: labels}}
	f.pods.containers = append(f.pods.containers, c)
	if state != "" {
		f.rt.status[id] = runtime.Status{State: state, Pid: 42}
	}
	return c
}

// call runs h behind the unary interceptor, so the error is what a CRI
// client receives.
func call[T any](t *testing.T, s *criServer, h func(context.Context) (T, error)) (T, error) {
	t.Helper()
	var zero T
	resp, err := unaryGuard(s.log, s.obs)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/test"},
		func(ctx context.Context, _ any) (any, error) { return h(ctx) })
	if err != nil || resp == nil {
		return zero, err
	}
	return resp.(T), nil
}

// fakeStream is an in-memory server stream: it keeps what is sent.
type fakeStream[T any] struct {
	ctx     context.Context
	mu      sync.Mutex
	sent    []*T
	sendErr error
	onSend  func(*T)
}

var _ grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse] = (*fakeStream[runtimeapi.StreamImagesResponse])(nil)

func newStream[T any](ctx context.Context) *fakeStream[T] { return &fakeStream[T]{ctx: ctx} }

func (f *fakeStream[T]) Send(m *T) error {
	if f.sendErr != nil {
		return f.sendErr
	}
	f.mu.Lock()
	f.sent = append(f.sent, m)
	f.mu.Unlock()
	if f.onSend != nil {
		f.onSend(m)
	}
	return nil
}

func (f *fakeStream[T]) messages() []*T {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

func (f *fakeStream[T]) Context() context.Context     { return f.ctx }
func (f *fakeStream[T]) SetHeader(metadata.MD) error  { return nil }
func (f *fakeStream[T]) SendHeader(metadata.MD) error { return nil }
func (f *fakeStream[T]) SetTrailer(metadata.MD)       {}
func (f *fakeStream[T]) SendMsg(m any) error          { return f.Send(m.(*T)) }
func (f *fakeStream[T]) RecvMsg(any) error            { return io.EOF }

// callStream runs a streaming handler behind the stream interceptor.
func callStream(t *testing.T, s *criServer, ss grpc.ServerStream, h func() error) error {
	t.Helper()
	return streamGuard(s.log, s.obs)(s, ss, &grpc.StreamServerInfo{FullMethod: "/test"},
		func(any, grpc.ServerStream) error { return h() })
}

// checkBatches asserts a streamed list came in full batches of the bound
// (the last one possibly shorter), and that ids, flattened, are each of
// want exactly once.
func checkBatches(t *testing.T, sizes []int, ids []string, want int) {
	t.Helper()
	const bound = 100
	if n := (want + bound - 1) / bound; len(sizes) != n {
		t.Fatalf("%d batches for %d items, want %d", len(sizes), want, n)
	}
	for i, n := range sizes {
		if n == 0 || n > bound || (i < len(sizes)-1 && n != bound) {
			t.Fatalf("batch %d has %d items (sizes %v)", i, n, sizes)
		}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("%s sent twice", id)
		}
		seen[id] = true
	}
	if len(seen) != want {
		t.Fatalf("%d distinct items sent, want %d", len(seen), want)
	}
}

// wantCode fails unless err carries the gRPC code (codes.OK: no error).
func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("code %v (%v), want %v", got, err, code)
	}
}

// wantCalls fails unless the recorded calls are exactly want.
func wantCalls(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s calls %q, want %q", what, got, want)
	}
}
