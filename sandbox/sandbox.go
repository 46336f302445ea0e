// Package sandbox owns pod sandboxes: their records, their pinned
// network/IPC/UTS namespaces, their CNI attachment and the per-pod files
// (resolv.conf, hostname, hosts, /dev/shm) that containers bind in.
//
// Pods are infra-less: namespaces are kept alive by bind mounts rather
// than by a pause process, so starting a pod costs a few syscalls plus
// the CNI ADD. Only a pod that shares one PID namespace between its
// containers needs a process to own that namespace; the server starts
// one and records it here (InfraID).
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crivet/crivet/internal/atomicfile"
	"github.com/crivet/crivet/internal/errclass"
	"github.com/crivet/crivet/oci/spec"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	// ErrNotFound: no pod has that ID (or prefix).
	ErrNotFound = errclass.New(errclass.NotFound, "pod sandbox not found")
	// ErrNameReserved: a pod with the same metadata exists.
	ErrNameReserved = errclass.New(errclass.AlreadyExists, "pod sandbox name is reserved")
	// ErrAmbiguous: a prefix matches several pods.
	ErrAmbiguous = errclass.New(errclass.InvalidArgument, "pod sandbox ID prefix is ambiguous")
)

// State of a pod, as CRI knows it.
type State string

const (
	Ready    State = "ready"
	NotReady State = "notready"
)

// Pod is one sandbox's record.
type Pod struct {
	ID             string                       `json:"id"`
	Config         *runtimeapi.PodSandboxConfig `json:"-"`
	RuntimeHandler string                       `json:"runtimeHandler,omitempty"`
	CreatedAt      time.Time                    `json:"createdAt"`
	State          State                        `json:"state"`
	// IPs are the pod's addresses, primary first; empty on the host network.
	IPs []string `json:"ips,omitempty"`
	// Namespace pins (bind mounts under Dir); "" when the host's is used.
	NetNS string `json:"netns,omitempty"`
	IPCNS string `json:"ipcns,omitempty"`
	UTSNS string `json:"utsns,omitempty"`
	// UserNS pins the pod's own user namespace (hostUsers: false), which
	// owns the three above; "" when the pod uses the node's.
	UserNS string `json:"userns,omitempty"`
	// Dir holds the pod's runtime files (under the run root).
	Dir string `json:"dir"`
	// InfraID is the container owning the pod's shared PID namespace, if any.
	InfraID string `json:"infraID,omitempty"`
	// CgroupDir is the pod's own cgroup (kubelet's cgroup_parent, as a
	// directory below each hierarchy's root; see package oci/cgroup), ""
	// when the pod names none.
	CgroupDir string `json:"cgroupDir,omitempty"`
	// Phase: see Phase. A pod still Creating at start-up never got its ID
	// to the client and is undone; one Removing is finished.
	Phase Phase `json:"phase,omitempty"`
}

// Namespace is the Kubernetes namespace of the pod, from the config crivet
// stored when the pod was created.
func (p *Pod) Namespace() string { return p.Config.GetMetadata().GetNamespace() }

// HostNetwork reports whether the pod uses the node's network namespace.
func (p *Pod) HostNetwork() bool {
	return p.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
}

// Files are the per-pod files for containers to bind in ("" = absent).
func (p *Pod) Files() (hostname, hosts, resolv, shm string) {
	f := func(name string) string {
		path := filepath.Join(p.Dir, name)
		if _, err := os.Stat(path); err != nil {
			return ""
		}
		return path
	}
	return f("hostname"), f("hosts"), f("resolv.conf"), f("shm")
}

func (p *Pod) clone() *Pod {
	c := *p
	c.IPs = slices.Clone(p.IPs)
	return &c
}

// record is the on-disk form: the CRI config as protobuf JSON.
type record struct {
	Pod
	Config json.RawMessage `json:"config"`
}

// Config locates the manager's state and the CNI network.
type Config struct {
	Root, RunRoot string
	CNIConfDir    string
	CNIPluginDirs []string
	// CgroupDriver is the node's cgroup driver ("systemd", "cgroupfs"):
	// New refuses to change it while pods exist. "" skips the check.
	CgroupDriver string
	Logger       *slog.Logger
}

// Manager is the only owner of pod records and pod namespaces.
type Manager struct {
	cfg Config
	log *slog.Logger
	net *network

	mu    sync.RWMutex
	pods  map[string]*Pod
	names map[string]string // reserved pod and container names → ID
	locks map[string]*sync.Mutex
	// pending: pods between BeginPod and CommitPod/AbortPod.
	pending map[string]*beginning

	containers map[string]*Container

	// recovering: start-up, until EndRecovery; what a killed daemon left
	// running (CNI plugins) may still be at work.
	recovering atomic.Bool
}

// EndRecovery says start-up recovery is over.
func (m *Manager) EndRecovery() { m.recovering.Store(false) }

func (m *Manager) recordDir() string { return filepath.Join(m.cfg.Root, "sandboxes") }

// New loads the pods recorded under Root.
func New(cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, net: newNetwork(cfg.CNIConfDir, cfg.CNIPluginDirs),
		pods: map[string]*Pod{}, names: map[string]string{}, locks: map[string]*sync.Mutex{}, pending: map[string]*beginning{}, containers: map[string]*Container{}}
	if err := os.MkdirAll(m.recordDir(), 0o700); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(m.recordDir())
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue // temp files of a write interrupted by a crash
		}
		p, err := m.load(filepath.Join(m.recordDir(), e.Name()))
		if err != nil {
			// A record we cannot read is kept for an operator to inspect,
			// never silently deleted.
			m.log.Error("unreadable pod sandbox record", "file", e.Name(), "error", err)
			continue
		}
		// A pod whose network namespace vanished (reboot: the run root is
		// a tmpfs) cannot be ready.
		if p.State == Ready && p.NetNS != "" {
			if _, err := os.Stat(p.NetNS); err != nil {
				p.State = NotReady
			}
		}
		if p.Phase == "" {
			p.Phase = Created
		}
		m.pods[p.ID] = p
		m.names[nameKey(p.Config.GetMetadata())] = p.ID
		m.locks[p.ID] = &sync.Mutex{}
	}
	if err := m.loadContainers(); err != nil {
		return nil, err
	}
	if err := m.checkCgroupDriver(cfg.CgroupDriver); err != nil {
		return nil, err
	}
	m.recovering.Store(true)
	return m, nil
}

func (m *Manager) load(path string) (*Pod, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	cfg := &runtimeapi.PodSandboxConfig{}
	if err := protojson.Unmarshal(r.Config, cfg); err != nil {
		return nil, err
	}
	p := r.Pod
	p.Config = cfg
	return &p, nil
}

// save writes the pod's record. durable adds the syncs that matter only
// if the machine goes down: the final record of a pod wants them; a
// Creating or Removing mark does not (a killed daemon's writes are in the
// page cache, and a machine that went down has lost the pod's namespaces
// and network anyway: kubelet removes and recreates it).
func (m *Manager) save(p *Pod, durable bool) error {
	cfg, err := protojson.Marshal(p.Config)
	if err != nil {
		return err
	}
	data, err := json.Marshal(record{Pod: *p, Config: cfg})
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(m.recordDir(), p.ID+".json"), data, 0o600, durable)
}

func nameKey(md *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", md.GetName(), md.GetNamespace(), md.GetUid(), md.GetAttempt())
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lock serialises operations on one pod.
func (m *Manager) lock(id string) func() {
	m.mu.Lock()
	l := m.locks[id]
	if l == nil {
		l = &sync.Mutex{}
		m.locks[id] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// NetworkReady reports whether pods can get a network.
func (m *Manager) NetworkReady() error { return m.net.Ready() }

// BeginPod makes a pod's namespaces, files and network and returns it in
// phase Creating, locked and not yet listed; the caller (lifecycle) may
// start more of the pod (its infra process) and set fields of the record,
// then calls CommitPod to record it as created, or AbortPod to undo
// everything. On its own failure BeginPod has undone what it made.
//
// Ordering against a crash: the pins and files are made under the pod's
// directory before any record exists (start-up recovery removes a pod
// directory without a record); the record, in phase Creating, is written
// before the CNI ADD (recovery runs the CNI DEL of a Creating pod and
// removes it); the final record is Created.
func (m *Manager) BeginPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (_ *Pod, err error) {
	md := cfg.GetMetadata()
	if md.GetName() == "" || md.GetNamespace() == "" || md.GetUid() == "" {
		return nil, fmt.Errorf("run pod sandbox: metadata needs name, namespace and uid")
	}
	// A pod user namespace is checked before anything is made.
	userns, err := spec.PodUserns(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox: %w", err)
	}
	key := nameKey(md)
	id := newID()
	m.mu.Lock()
	if other, ok := m.names[key]; ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("run pod sandbox %s: %w by %s", key, ErrNameReserved, other)
	}
	m.names[key] = id
	m.locks[id] = &sync.Mutex{}
	m.mu.Unlock()
	unlock := m.lock(id)

	b := &beginning{start: time.Now(), unlock: unlock}
	p := &Pod{ID: id, Config: cfg, RuntimeHandler: handler, CreatedAt: time.Now(), State: Ready,
		Dir: filepath.Join(m.cfg.RunRoot, "sandboxes", id), Phase: Creating}
	m.mu.Lock()
	m.pending[id] = b
	m.mu.Unlock()
	defer func() {
		if err != nil {
			m.AbortPod(context.WithoutCancel(ctx), p)
		}
	}()
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("run pod sandbox: %w", err)
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	var kinds []string
	if nsOpts.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		kinds = append(kinds, NetNS, UTSNS)
	}
	if nsOpts.GetIpc() != runtimeapi.NamespaceMode_NODE {
		kinds = append(kinds, IPCNS)
	}
	t := time.Now()
	var pins map[string]string
	if userns != nil {
		pins, err = pinUserns(filepath.Join(p.Dir, "ns"), kinds, cfg.GetHostname(), userns)
	} else {
		pins, err = pinNamespaces(filepath.Join(p.Dir, "ns"), kinds, cfg.GetHostname())
	}
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox: %w", err)
	}
	p.NetNS, p.IPCNS, p.UTSNS, p.UserNS = pins[NetNS], pins[IPCNS], pins[UTSNS], pins[UserNS]
	b.ns = time.Since(t)

	t = time.Now()
	if err := m.writeFiles(p, nil); err != nil {
		return nil, err
	}
	if p.IPCNS != "" {
		if err := mountShm(filepath.Join(p.Dir, "shm"), 0); err != nil {
			return nil, fmt.Errorf("run pod sandbox: /dev/shm: %w", err)
		}
	}
	// The pod's config also goes beside its pins: should the record be
	// lost, the start-up sweep of pod directories still knows the port
	// mappings a CNI DEL needs to remove the pod's hostPort rules.
	if err := writePodConfig(p); err != nil {
		return nil, fmt.Errorf("run pod sandbox: %w", err)
	}
	b.files = time.Since(t)
	// Record before attaching the network: a crash from here on leaves a
	// record whose Stop/Remove undoes the attachment.
	t = time.Now()
	if err := m.save(p, false); err != nil {
		return nil, fmt.Errorf("run pod sandbox: save: %w", err)
	}
	b.record = time.Since(t)
	if p.NetNS != "" {
		t := time.Now()
		ips, err := m.net.Attach(ctx, id, p.NetNS, cfg)
		b.cni = time.Since(t)
		if err != nil {
			return nil, fmt.Errorf("run pod sandbox: %w", err)
		}
		p.IPs = ips
		if err := m.writeFiles(p, ips); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// beginning is a pod between BeginPod and CommitPod or AbortPod: it holds
// the pod's lock, and the step times logged with the result (where a pod
// start's time goes).
type beginning struct {
	start                  time.Time
	unlock                 func()
	ns, files, record, cni time.Duration
}

// takePending ends p's beginning: nil when p was not begun or already
// ended (a second Commit or Abort does nothing).
func (m *Manager) takePending(id string) *beginning {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.pending[id]
	delete(m.pending, id)
	return b
}

// CommitPod records the pod BeginPod returned as created, with the fields
// the caller set, and lists it.
func (m *Manager) CommitPod(p *Pod) (*Pod, error) {
	b := m.takePending(p.ID)
	if b == nil {
		return nil, fmt.Errorf("run pod sandbox %s: not being created: %w", p.ID, ErrNotFound)
	}
	p.Phase = Created
	t := time.Now()
	if err := m.save(p, true); err != nil {
		// Still the caller's to abort, lock and all.
		m.mu.Lock()
		m.pending[p.ID] = b
		m.mu.Unlock()
		p.Phase = Creating
		return nil, fmt.Errorf("run pod sandbox: save: %w", err)
	}
	b.record += time.Since(t)
	m.mu.Lock()
	m.pods[p.ID] = p
	m.mu.Unlock()
	b.unlock()
	md := p.Config.GetMetadata()
	m.log.Info("pod sandbox ready", "id", p.ID, "pod", md.GetName(), "namespace", md.GetNamespace(), "ips", p.IPs,
		"duration", time.Since(b.start), "namespaces", b.ns, "files", b.files, "records", b.record, "cni", b.cni)
	return p.clone(), nil
}

// AbortPod undoes a pod BeginPod made: its network, pins, files and
// record, and frees its name.
func (m *Manager) AbortPod(ctx context.Context, p *Pod) {
	b := m.takePending(p.ID)
	if b == nil {
		return
	}
	if err := m.teardown(ctx, p, true); err != nil {
		m.log.Error("run pod sandbox: undo failed; start-up recovery will retry", "id", p.ID, "error", err)
	}
	_ = os.Remove(filepath.Join(m.recordDir(), p.ID+".json"))
	m.mu.Lock()
	delete(m.names, nameKey(p.Config.GetMetadata()))
	delete(m.locks, p.ID)
	m.mu.Unlock()
	b.unlock()
}

func (m *Manager) writeFiles(p *Pod, ips []string) error {
	cfg := p.Config
	resolv, err := resolvConf(cfg.GetDnsConfig())
	if err != nil {
		return fmt.Errorf("run pod sandbox: resolv.conf: %w", err)
	}
	files := map[string][]byte{"resolv.conf": resolv}
	// A host-network pod keeps the node's hostname (its UTS namespace) and
	// kubelet binds its own hosts file; resolv.conf it still needs, since
	// its image (often scratch, as kube-proxy's) has none: kube-proxy on a
	// kind worker resolves the API server's name through it.
	if p.NetNS != "" {
		hostname := cfg.GetHostname()
		if hostname == "" {
			hostname = cfg.GetMetadata().GetName()
		}
		files["hostname"] = []byte(hostname + "\n")
		files["hosts"] = hostsFile(hostname, ips)
	}
	for name, data := range files {
		if data == nil {
			continue
		}
		// Pod files live in the run root and are rewritten on every pod
		// start: atomic, but no fsync on the pod start path.
		if err := atomicfile.Write(filepath.Join(p.Dir, name), data, 0o644, false); err != nil {
			return fmt.Errorf("run pod sandbox: %s: %w", name, err)
		}
	}
	return nil
}

// teardown releases what a pod holds on the node. With all, also the
// IPC/UTS namespaces and the pod's files (removal); without, only what
// stopping releases (network, netns, shm). Each step is idempotent.
func (m *Manager) teardown(ctx context.Context, p *Pod, all bool) error {
	var errs []error
	if p.NetNS != "" {
		if err := m.net.Detach(ctx, p.ID, p.NetNS, p.Config, m.recovering.Load()); err != nil {
			errs = append(errs, err)
		}
		if err := unpin(p.NetNS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmountAll(filepath.Join(p.Dir, "shm")); err != nil {
		errs = append(errs, err)
	}
	if all {
		// Every pin under the pod's directory, not only those recorded: a
		// crash can come between pinning and recording.
		if err := unpinAll(filepath.Join(p.Dir, "ns")); err != nil {
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			if err := os.RemoveAll(p.Dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Stop releases the pod's network and shm; its record stays (NotReady).
// Stopping a missing pod succeeds (CRI idempotence).
func (m *Manager) Stop(ctx context.Context, id string) error {
	return m.withLockedPod(id, func(p *Pod) error {
		if err := m.teardown(ctx, p, false); err != nil {
			return fmt.Errorf("stop pod sandbox %s: %w", p.ID, err)
		}
		// The network is released: a later Remove has no CNI DEL to repeat.
		return m.update(p.ID, func(q *Pod) { q.State = NotReady; q.IPs = nil; q.NetNS = "" })
	})
}

// withLockedPod runs f on the pod under its lock; a pod that is not there
// is success (CRI idempotence).
func (m *Manager) withLockedPod(id string, f func(p *Pod) error) error {
	p, err := m.Get(id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	unlock := m.lock(p.ID)
	defer unlock()
	return f(p)
}

// MarkRemoving records that the pod's removal has begun: from here on a
// killed daemon's removal is finished by start-up recovery, not left half
// done. Not synced: see save.
func (m *Manager) MarkRemoving(id string) error {
	return m.update(id, func(p *Pod) { p.Phase = Removing })
}

// Remove stops the pod if needed and deletes everything of it. Removing a
// missing pod succeeds, and so does removing one whose parts (pins, CNI
// attachment, directory) are partly gone.
func (m *Manager) Remove(ctx context.Context, id string) error {
	return m.withLockedPod(id, func(p *Pod) error {
		if err := m.teardown(ctx, p, true); err != nil {
			return fmt.Errorf("remove pod sandbox %s: %w", p.ID, err)
		}
		if err := os.Remove(filepath.Join(m.recordDir(), p.ID+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove pod sandbox %s: %w", p.ID, err)
		}
		m.mu.Lock()
		delete(m.pods, p.ID)
		delete(m.names, nameKey(p.Config.GetMetadata()))
		m.mu.Unlock()
		m.log.Info("pod sandbox removed", "id", p.ID)
		return nil
	})
}

// RemoveOrphanDirs removes the pod directories under the run root that no
// pod record owns: what a RunPodSandbox killed before its first record
// left (pins, shm). No CNI ADD runs before that record, but a DEL of a
// still-pinned network namespace is cheap insurance. It returns the IDs
// cleaned; it is for start-up, before any call is served.
func (m *Manager) RemoveOrphanDirs(ctx context.Context) ([]string, error) {
	root := filepath.Join(m.cfg.RunRoot, "sandboxes")
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pod directories: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		id := e.Name()
		if _, err := os.Stat(filepath.Join(m.recordDir(), id+".json")); err == nil {
			continue // owned, perhaps by a record too damaged to load: kept
		}
		m.mu.RLock()
		_, known := m.pods[id]
		m.mu.RUnlock()
		if known {
			continue
		}
		p := &Pod{ID: id, Dir: filepath.Join(root, id), Config: readPodConfig(filepath.Join(root, id))}
		if pin := filepath.Join(p.Dir, "ns", NetNS); isNamespace(pin) {
			p.NetNS = pin
		}
		if err := m.teardown(ctx, p, true); err != nil {
			errs = append(errs, fmt.Errorf("orphan pod directory %s: %w", p.Dir, err))
			continue
		}
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}

// Update changes a pod's record durably.
func (m *Manager) Update(id string, f func(*Pod)) error { return m.update(id, f) }

func (m *Manager) update(id string, f func(*Pod)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pods[id]
	if !ok {
		return fmt.Errorf("pod sandbox %s: %w", id, ErrNotFound)
	}
	c := p.clone()
	f(c)
	if err := m.save(c, c.Phase != Removing); err != nil {
		return err
	}
	m.pods[id] = c
	return nil
}

// Get finds a pod by ID or unique ID prefix.
func (m *Manager) Get(id string) (*Pod, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if p, ok := m.pods[id]; ok {
		return p.clone(), nil
	}
	var found *Pod
	if id != "" {
		for pid, p := range m.pods {
			if strings.HasPrefix(pid, id) {
				if found != nil {
					return nil, fmt.Errorf("%q: %w", id, ErrAmbiguous)
				}
				found = p
			}
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%q: %w", id, ErrNotFound)
	}
	return found.clone(), nil
}

// List returns every pod.
func (m *Manager) List() []*Pod {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Pod, 0, len(m.pods))
	for _, p := range m.pods {
		out = append(out, p.clone())
	}
	return out
}

// podConfigFile is the pod's CRI config kept in its run directory.
const podConfigFile = "config.json"

func writePodConfig(p *Pod) error {
	data, err := protojson.Marshal(p.Config)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(p.Dir, podConfigFile), data, 0o600, false)
}

// readPodConfig reads what writePodConfig wrote; an empty config when it
// cannot (a directory from before this file existed, a torn write).
func readPodConfig(dir string) *runtimeapi.PodSandboxConfig {
	cfg := &runtimeapi.PodSandboxConfig{}
	if data, err := os.ReadFile(filepath.Join(dir, podConfigFile)); err == nil && protojson.Unmarshal(data, cfg) == nil {
		if cfg.Metadata == nil {
			cfg.Metadata = &runtimeapi.PodSandboxMetadata{}
		}
		return cfg
	}
	return &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{}}
}
