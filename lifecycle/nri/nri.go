// Package nri makes crivet an NRI runtime (Node Resource Interface,
// github.com/containerd/nri): plugins connect on a unix socket, or are
// started from a directory, and are told of each pod and container step;
// at CreateContainer they may adjust the container's OCI spec, and at
// UpdateContainerResources its resources. The lifecycle package calls in
// through its Plugins interface, which *NRI implements.
//
// What a plugin may not do is in boundary.go. Plugins are bounded: each
// call has the configured request timeout; a plugin that times out or
// whose connection breaks is dropped and the step goes on without it
// (unless the plugin itself asked, through its failure policy, that its
// failure fail the step), so a plugin never wedges a pod.
package nri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Defaults, as NRI's own.
const (
	DefaultSocketPath          = adaptation.DefaultSocketPath
	DefaultPluginPath          = adaptation.DefaultPluginPath
	DefaultPluginConfigPath    = adaptation.DefaultPluginConfigPath
	DefaultRegistrationTimeout = adaptation.DefaultPluginRegistrationTimeout
	DefaultRequestTimeout      = adaptation.DefaultPluginRequestTimeout
)

// Config configures the NRI runtime side.
type Config struct {
	// SocketPath is where plugins connect ("" = no external plugins).
	SocketPath string
	// PluginPath holds pre-registered plugins (NN-name executables) that
	// crivet starts; PluginConfigPath their configuration (NN-name.conf
	// or name.conf).
	PluginPath, PluginConfigPath string
	// RegistrationTimeout bounds a plugin's registration, RequestTimeout
	// each call to a plugin.
	RegistrationTimeout, RequestTimeout time.Duration
	// RuntimeName and RuntimeVersion are told to plugins.
	RuntimeName, RuntimeVersion string

	Pods     Pods
	Runtime  Runtime
	Observer Observer
	Logger   *slog.Logger
	// CDI resolves the CDI devices a plugin's adjustment asks for (the
	// same registry as the CRI request's devices); nil refuses them.
	CDI CDI
}

// CDI applies the edits of named CDI devices to a spec (oci/cdi.Registry).
type CDI interface {
	InjectDevices(sp *specs.Spec, names []string) error
}

// Pods reads the pod and container records (sandbox.Manager).
type Pods interface {
	Get(id string) (*sandbox.Pod, error)
	List() []*sandbox.Pod
	Containers(podID string) []*sandbox.Container
	GetContainer(id string) (*sandbox.Container, error)
}

// Runtime reads container state and applies resource updates
// (runtime.Runtime).
type Runtime interface {
	Status(ctx context.Context, id string) (runtime.Status, error)
	Update(ctx context.Context, id string, res *specs.LinuxResources) error
}

// Observer counts plugin calls, failures and refusals (metrics.Metrics).
type Observer interface {
	NRIPluginCall(plugin, event string, failed bool)
	NRIPlugins(connected int)
	NRIRefused(what string)
}

type nopObserver struct{}

func (nopObserver) NRIPluginCall(string, string, bool) {}
func (nopObserver) NRIPlugins(int)                     {}
func (nopObserver) NRIRefused(string)                  {}

// NRI is the runtime side of NRI for crivet.
type NRI struct {
	cfg   Config
	nri   *adaptation.Adaptation
	log   *slog.Logger
	obs   Observer
	track *tracker

	// seq orders a container's StopContainer before its RemoveContainer
	// when an exit and a removal race (the library serializes every
	// plugin call anyway).
	seq sync.Mutex
	mu  sync.Mutex
	// stopped and removed containers: plugins hear of each once, though
	// a stop can be seen both by a request and by the exit watcher.
	stopped map[string]time.Time
	removed map[string]time.Time
}

// New sets up the NRI runtime; Start begins serving plugins.
func New(cfg Config) (*NRI, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.RegistrationTimeout <= 0 {
		cfg.RegistrationTimeout = DefaultRegistrationTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	n := &NRI{cfg: cfg, log: cfg.Logger.With("component", "nri"), obs: cfg.Observer,
		stopped: map[string]time.Time{}, removed: map[string]time.Time{}}
	n.track = newTracker(n.log, cfg.Observer)
	// NRI's timeouts and logger are process-wide settings of the library.
	adaptation.SetPluginRegistrationTimeout(cfg.RegistrationTimeout)
	adaptation.SetPluginRequestTimeout(cfg.RequestTimeout)
	setLogger(n.log, n.track)
	opts := []adaptation.Option{
		adaptation.WithPluginPath(cfg.PluginPath),
		adaptation.WithPluginConfigPath(cfg.PluginConfigPath),
		adaptation.WithMetrics(n.track),
	}
	if cfg.SocketPath == "" {
		opts = append(opts, adaptation.WithDisabledExternalConnections())
	} else {
		opts = append(opts, adaptation.WithSocketPath(cfg.SocketPath))
	}
	a, err := adaptation.New(cfg.RuntimeName, cfg.RuntimeVersion, n.synchronize, n.updateContainers, opts...)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	n.nri = a
	return n, nil
}

// Start starts the pre-registered plugins and listens for others.
func (n *NRI) Start() error {
	if err := n.nri.Start(); err != nil {
		return fmt.Errorf("nri: %w", err)
	}
	n.log.Info("NRI enabled", "socket", n.cfg.SocketPath, "plugin_path", n.cfg.PluginPath,
		"plugin_config_path", n.cfg.PluginConfigPath, "request_timeout", n.cfg.RequestTimeout)
	return nil
}

// Stop stops the plugins crivet started and closes the socket.
func (n *NRI) Stop() { n.nri.Stop() }

// Info is what crictl info shows of NRI.
type Info struct {
	Socket         string       `json:"socket"`
	PluginPath     string       `json:"pluginPath"`
	RequestTimeout string       `json:"requestTimeout"`
	Plugins        []PluginInfo `json:"plugins"`
}

// Info lists the connected plugins.
func (n *NRI) Info() any {
	return Info{Socket: n.cfg.SocketPath, PluginPath: n.cfg.PluginPath, RequestTimeout: n.cfg.RequestTimeout.String(), Plugins: n.track.plugins()}
}

// synchronize gives a plugin that connects every pod and container.
func (n *NRI) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	var pods []*api.PodSandbox
	var ctrs []*api.Container
	for _, p := range n.cfg.Pods.List() {
		if p.Phase == sandbox.Removing {
			continue
		}
		pods = append(pods, podSandbox(p))
		for _, c := range n.cfg.Pods.Containers(p.ID) {
			if c.Phase == sandbox.Removing {
				continue
			}
			ctrs = append(ctrs, container(c, nil, n.status(ctx, c.ID)))
		}
	}
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return err
	}
	n.apply(ctx, "Synchronize", updates, nil)
	return nil
}

func (n *NRI) status(ctx context.Context, id string) *runtime.Status {
	st, err := n.cfg.Runtime.Status(ctx, id)
	if err != nil {
		return nil
	}
	return &st
}

// updateContainers applies updates a plugin asks for on its own: only
// resources can change, through runc update, as a CRI update would.
func (n *NRI) updateContainers(ctx context.Context, updates []*adaptation.ContainerUpdate) ([]*adaptation.ContainerUpdate, error) {
	return n.apply(ctx, "UpdateContainers", updates, nil), nil
}

// apply runs the resource updates and refuses evictions: crivet does not
// kill a container for a plugin (kubelet decides what runs), and says so.
func (n *NRI) apply(ctx context.Context, from string, updates []*api.ContainerUpdate, evict []*api.ContainerEviction) (failed []*api.ContainerUpdate) {
	for _, e := range evict {
		n.obs.NRIRefused("eviction")
		n.log.Warn("NRI: a plugin asked to evict a container; refused, crivet does not evict for plugins",
			"request", from, "container", e.GetContainerId(), "reason", e.GetReason())
	}
	for _, u := range updates {
		res := u.GetLinux().GetResources().ToOCI()
		if res == nil {
			continue
		}
		if _, err := n.cfg.Pods.GetContainer(u.GetContainerId()); err != nil {
			err = fmt.Errorf("container %s: %w", u.GetContainerId(), err)
			n.log.Warn("NRI: container update from a plugin failed", "request", from, "error", err)
			if !u.GetIgnoreFailure() {
				failed = append(failed, u)
			}
			continue
		}
		if err := n.cfg.Runtime.Update(ctx, u.GetContainerId(), res); err != nil {
			n.log.Warn("NRI: container update from a plugin failed", "request", from, "container", u.GetContainerId(), "error", err)
			if !u.GetIgnoreFailure() {
				failed = append(failed, u)
			}
			continue
		}
		n.log.Info("NRI: container resources updated by a plugin", "request", from, "container", u.GetContainerId())
	}
	return failed
}

// HoldSync keeps a connecting plugin's synchronization waiting; see
// lifecycle.Plugins.
func (n *NRI) HoldSync() func() { return n.nri.BlockPluginSync().Unblock }

// RunPod: see lifecycle.Plugins.
func (n *NRI) RunPod(ctx context.Context, pod *sandbox.Pod) error {
	if err := n.nri.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: podSandbox(pod)}); err != nil {
		return fmt.Errorf("NRI RunPodSandbox: %w", err)
	}
	return nil
}

// StopPod: see lifecycle.Plugins. Failures are logged.
func (n *NRI) StopPod(ctx context.Context, pod *sandbox.Pod) {
	if err := n.nri.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: podSandbox(pod)}); err != nil {
		n.log.Warn("NRI StopPodSandbox failed; the pod stops anyway", "pod", pod.ID, "error", err)
	}
}

// RemovePod: see lifecycle.Plugins. Failures are logged.
func (n *NRI) RemovePod(ctx context.Context, pod *sandbox.Pod) {
	if err := n.nri.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: podSandbox(pod)}); err != nil {
		n.log.Warn("NRI RemovePodSandbox failed; the pod is removed anyway", "pod", pod.ID, "error", err)
	}
}

// UpdatePod: see lifecycle.Plugins; a plugin's error fails the update.
func (n *NRI) UpdatePod(ctx context.Context, pod *sandbox.Pod, overhead, res *specs.LinuxResources) error {
	req := &api.UpdatePodSandboxRequest{Pod: podSandbox(pod)}
	if overhead != nil {
		req.OverheadLinuxResources = api.FromOCILinuxResources(overhead, nil)
	}
	if res != nil {
		req.LinuxResources = api.FromOCILinuxResources(res, nil)
	}
	if _, err := n.nri.UpdatePodSandbox(ctx, req); err != nil {
		return fmt.Errorf("NRI UpdatePodSandbox: %w", err)
	}
	return nil
}

// PostUpdatePod: see lifecycle.Plugins. Failures are logged.
func (n *NRI) PostUpdatePod(ctx context.Context, pod *sandbox.Pod) {
	if err := n.nri.PostUpdatePodSandbox(ctx, &api.PostUpdatePodSandboxRequest{Pod: podSandbox(pod)}); err != nil {
		n.log.Warn("NRI PostUpdatePodSandbox failed", "pod", pod.ID, "error", err)
	}
}

// CreateContainer asks the plugins for their adjustments and applies them
// to sp, within the boundary (boundary.go); a refused adjustment fails
// the create.
func (n *NRI) CreateContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, sp *specs.Spec) (err error) {
	// The library's conversion and adjustment code runs on what plugins
	// sent; a panic there fails this create (and undoes it), no more.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("NRI CreateContainer: internal error: %v", r)
		}
	}()
	n.forget(c.ID) // an ID is never reused, but be exact
	resp, err := n.nri.CreateContainer(ctx, &api.CreateContainerRequest{Pod: podSandbox(pod), Container: container(c, sp, nil)})
	if err != nil {
		return fmt.Errorf("NRI CreateContainer: %w", err)
	}
	adj := resp.GetAdjust()
	if err := checkAdjustment(adj, n.cfg.CDI != nil); err != nil {
		n.obs.NRIRefused("adjustment")
		n.log.Warn("NRI: adjustment refused; the container is not created", "container", c.ID, "pod", pod.ID, "error", err)
		return err
	}
	root := sp.Root
	if root != nil {
		r := *root
		root = &r
	}
	var opts []nrigen.GeneratorOption
	if n.cfg.CDI != nil {
		// Device edits come from the node's own CDI spec files, which the
		// operator installed; checkRootKept below still holds over them.
		opts = append(opts, nrigen.WithCDIDeviceInjector(func(sp *specs.Spec, names []string) error {
			return n.cfg.CDI.InjectDevices(sp, names)
		}))
	}
	g := nrigen.SpecGenerator(specEdit{sp: sp}, opts...)
	if err := g.Adjust(adj); err != nil {
		return fmt.Errorf("NRI CreateContainer: apply the plugins' adjustment: %w", err)
	}
	if err := checkRootKept(root, sp); err != nil {
		n.obs.NRIRefused("adjustment")
		return err
	}
	// Updates of this container are already in the adjustment; others'
	// are applied now, evictions refused.
	var others []*api.ContainerUpdate
	for _, u := range resp.GetUpdate() {
		if u.GetContainerId() != c.ID {
			others = append(others, u)
		}
	}
	n.apply(ctx, "CreateContainer", others, resp.GetEvict())
	return nil
}

// PostCreateContainer: see lifecycle.Plugins.
func (n *NRI) PostCreateContainer(ctx context.Context, c *sandbox.Container) {
	n.call(ctx, c, "PostCreateContainer", func(pod *api.PodSandbox, ctr *api.Container) error {
		return n.nri.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: pod, Container: ctr})
	})
}

// StartContainer: see lifecycle.Plugins; an error keeps it from starting.
func (n *NRI) StartContainer(ctx context.Context, c *sandbox.Container) error {
	pod, ctr, err := n.lookup(ctx, c)
	if err != nil {
		return nil // the step itself reports a missing pod
	}
	if err := n.nri.StartContainer(ctx, &api.StartContainerRequest{Pod: pod, Container: ctr}); err != nil {
		return fmt.Errorf("NRI StartContainer: %w", err)
	}
	return nil
}

// PostStartContainer: see lifecycle.Plugins.
func (n *NRI) PostStartContainer(ctx context.Context, c *sandbox.Container) {
	n.call(ctx, c, "PostStartContainer", func(pod *api.PodSandbox, ctr *api.Container) error {
		return n.nri.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: pod, Container: ctr})
	})
}

// UpdateContainer lets plugins change a CRI resource update.
func (n *NRI) UpdateContainer(ctx context.Context, c *sandbox.Container, res *specs.LinuxResources) (*specs.LinuxResources, error) {
	pod, ctr, err := n.lookup(ctx, c)
	if err != nil {
		return res, nil
	}
	resp, err := n.nri.UpdateContainer(ctx, &api.UpdateContainerRequest{Pod: pod, Container: ctr, LinuxResources: api.FromOCILinuxResources(res, nil)})
	if err != nil {
		return nil, fmt.Errorf("NRI UpdateContainer: %w", err)
	}
	var others []*api.ContainerUpdate
	for _, u := range resp.GetUpdate() {
		if u.GetContainerId() == c.ID {
			// Only what plugins set is in it: laid over the request.
			res = overlay(res, u.GetLinux().GetResources().ToOCI())
			continue
		}
		others = append(others, u)
	}
	n.apply(ctx, "UpdateContainer", others, resp.GetEvict())
	return res, nil
}

// PostUpdateContainer: see lifecycle.Plugins.
func (n *NRI) PostUpdateContainer(ctx context.Context, c *sandbox.Container) {
	n.call(ctx, c, "PostUpdateContainer", func(pod *api.PodSandbox, ctr *api.Container) error {
		return n.nri.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: pod, Container: ctr})
	})
}

// StopContainer: see lifecycle.Plugins; once per container.
func (n *NRI) StopContainer(ctx context.Context, c *sandbox.Container) {
	n.seq.Lock()
	defer n.seq.Unlock()
	n.mu.Lock()
	_, told := n.stopped[c.ID]
	_, gone := n.removed[c.ID]
	if !told && !gone {
		n.stopped[c.ID] = time.Now()
	}
	n.mu.Unlock()
	if told || gone {
		return
	}
	n.call(ctx, c, "StopContainer", func(pod *api.PodSandbox, ctr *api.Container) error {
		resp, err := n.nri.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: ctr})
		if err == nil {
			n.apply(ctx, "StopContainer", resp.GetUpdate(), nil)
		}
		return err
	})
}

// RemoveContainer: see lifecycle.Plugins; once per container.
func (n *NRI) RemoveContainer(ctx context.Context, c *sandbox.Container) {
	n.seq.Lock()
	defer n.seq.Unlock()
	n.mu.Lock()
	_, gone := n.removed[c.ID]
	now := time.Now()
	n.removed[c.ID] = now
	delete(n.stopped, c.ID)
	// Removed IDs are kept a while so a late exit report is not told
	// after the removal; old ones go.
	for id, t := range n.removed {
		if now.Sub(t) > forgetAfter {
			delete(n.removed, id)
		}
	}
	n.mu.Unlock()
	if gone {
		return
	}
	n.call(ctx, c, "RemoveContainer", func(pod *api.PodSandbox, ctr *api.Container) error {
		return n.nri.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: pod, Container: ctr})
	})
}

const forgetAfter = 10 * time.Minute

func (n *NRI) forget(id string) {
	n.mu.Lock()
	delete(n.stopped, id)
	delete(n.removed, id)
	n.mu.Unlock()
}

// lookup finds the container's pod and builds both messages.
func (n *NRI) lookup(ctx context.Context, c *sandbox.Container) (*api.PodSandbox, *api.Container, error) {
	p, err := n.cfg.Pods.Get(c.PodID)
	if err != nil {
		return nil, nil, err
	}
	return podSandbox(p), container(c, nil, n.status(ctx, c.ID)), nil
}

// call relays a step whose failure does not fail it: logged.
func (n *NRI) call(ctx context.Context, c *sandbox.Container, event string, f func(*api.PodSandbox, *api.Container) error) {
	pod, ctr, err := n.lookup(ctx, c)
	if errors.Is(err, sandbox.ErrNotFound) {
		// A pod removed meanwhile: the plugins still hear of the container.
		pod, ctr, err = &api.PodSandbox{Id: c.PodID}, container(c, nil, nil), nil
	}
	if err != nil {
		n.log.Warn("NRI "+event+": pod lookup failed", "container", c.ID, "error", err)
		return
	}
	if err := f(pod, ctr); err != nil {
		n.log.Warn("NRI "+event+" failed; going on", "container", c.ID, "error", err)
	}
}

// overlay is res with every field plugins set in p replacing its own.
func overlay(res, p *specs.LinuxResources) *specs.LinuxResources {
	if p == nil {
		return res
	}
	out := &specs.LinuxResources{}
	if res != nil {
		*out = *res
	}
	if m := p.Memory; m != nil {
		mem := &specs.LinuxMemory{}
		if out.Memory != nil {
			*mem = *out.Memory
		}
		for _, f := range []struct{ from, to **int64 }{{&m.Limit, &mem.Limit}, {&m.Reservation, &mem.Reservation}, {&m.Swap, &mem.Swap}, {&m.Kernel, &mem.Kernel}, {&m.KernelTCP, &mem.KernelTCP}} {
			if *f.from != nil {
				*f.to = *f.from
			}
		}
		if m.Swappiness != nil {
			mem.Swappiness = m.Swappiness
		}
		out.Memory = mem
	}
	if c := p.CPU; c != nil {
		cpu := &specs.LinuxCPU{}
		if out.CPU != nil {
			*cpu = *out.CPU
		}
		if c.Shares != nil {
			cpu.Shares = c.Shares
		}
		if c.Quota != nil {
			cpu.Quota = c.Quota
		}
		if c.Period != nil {
			cpu.Period = c.Period
		}
		if c.RealtimeRuntime != nil {
			cpu.RealtimeRuntime = c.RealtimeRuntime
		}
		if c.RealtimePeriod != nil {
			cpu.RealtimePeriod = c.RealtimePeriod
		}
		if c.Cpus != "" {
			cpu.Cpus = c.Cpus
		}
		if c.Mems != "" {
			cpu.Mems = c.Mems
		}
		out.CPU = cpu
	}
	if p.Pids != nil {
		out.Pids = p.Pids
	}
	if len(p.HugepageLimits) > 0 {
		out.HugepageLimits = p.HugepageLimits
	}
	if len(p.Unified) > 0 {
		u := map[string]string{}
		for k, v := range out.Unified {
			u[k] = v
		}
		for k, v := range p.Unified {
			u[k] = v
		}
		out.Unified = u
	}
	if p.BlockIO != nil {
		out.BlockIO = p.BlockIO
	}
	return out
}
