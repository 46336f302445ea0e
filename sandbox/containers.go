package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/crivet/crivet/internal/atomicfile"
	"github.com/crivet/crivet/internal/errclass"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	// ErrContainerNotFound: no container has that ID (or prefix).
	ErrContainerNotFound = errclass.New(errclass.NotFound, "container not found")
	// ErrContainerNameReserved: a container of the pod has the same metadata.
	ErrContainerNameReserved = errclass.New(errclass.AlreadyExists, "name is reserved")
)

// Phase orders a record against the work it describes, so start-up
// recovery knows what a crash interrupted: a record is written in Creating
// before anything is made on the node and moves to Created once all is
// made; Removing is written before anything is taken down. "" is Created
// (records written before phases existed).
type Phase string

const (
	Creating Phase = "creating"
	Created  Phase = "created"
	Removing Phase = "removing"
)

// Container is what crivet recorded when a container was created; its
// process state is the OCI runtime's to report.
type Container struct {
	ID        string                      `json:"id"`
	PodID     string                      `json:"podID"`
	Config    *runtimeapi.ContainerConfig `json:"-"`
	CreatedAt time.Time                   `json:"createdAt"`
	// ImageID is the image's ID ("sha256:…"), what ContainerStatus reports.
	ImageID string `json:"imageID"`
	// ImageRef is the reference the image was verified as at creation.
	ImageRef string `json:"imageRef"`
	// SignatureWarnings are the refusals that warn mode admitted at
	// creation (the image's, then each image volume's).
	SignatureWarnings []string `json:"signatureWarnings,omitempty"`
	LogPath           string   `json:"logPath,omitempty"`
	Bundle            string   `json:"bundle"`
	// Mounts as resolved at creation (for ContainerStatus).
	Mounts []*runtimeapi.Mount `json:"-"`
	// User is the process user as resolved from the image.
	UID          int64   `json:"uid"`
	GID          int64   `json:"gid"`
	Supplemental []int64 `json:"supplemental,omitempty"`
	StopSignal   string  `json:"stopSignal,omitempty"`
	// ImageMounts are the images mounted as volumes for this container.
	ImageMounts []string `json:"imageMounts,omitempty"`
	// CgroupPath is the container's cgroup directory below each
	// hierarchy's root (oci/cgroup's Dir of runc's cgroupsPath; under the
	// cgroupfs driver, the only one of older records, the two are equal).
	CgroupPath string `json:"cgroupPath,omitempty"`
	// Phase: see Phase. Creating records are not listed or found by ID:
	// the client has no ID for them until CreateContainer returns.
	Phase Phase `json:"phase,omitempty"`
}

type containerRecord struct {
	Container
	Config json.RawMessage   `json:"config"`
	Mounts []json.RawMessage `json:"mounts,omitempty"`
}

func (m *Manager) containerDir() string { return filepath.Join(m.cfg.Root, "containers") }

func containerKey(c *runtimeapi.ContainerConfig, pod *Pod) string {
	md := pod.Config.GetMetadata()
	return fmt.Sprintf("%s_%d_%s_%s_%s_%d", c.GetMetadata().GetName(), c.GetMetadata().GetAttempt(), md.GetName(), md.GetNamespace(), md.GetUid(), md.GetAttempt())
}

func (m *Manager) loadContainers() error {
	if err := os.MkdirAll(m.containerDir(), 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(m.containerDir())
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(m.containerDir(), e.Name()))
		if err != nil {
			return err
		}
		var r containerRecord
		if err := json.Unmarshal(data, &r); err != nil {
			m.log.Error("unreadable container record", "file", e.Name(), "error", err)
			continue
		}
		c := r.Container
		c.Config = &runtimeapi.ContainerConfig{}
		if err := protojson.Unmarshal(r.Config, c.Config); err != nil {
			m.log.Error("unreadable container record", "file", e.Name(), "error", err)
			continue
		}
		for _, raw := range r.Mounts {
			mnt := &runtimeapi.Mount{}
			if protojson.Unmarshal(raw, mnt) == nil {
				c.Mounts = append(c.Mounts, mnt)
			}
		}
		if c.Phase == "" {
			c.Phase = Created
		}
		m.containers[c.ID] = &c
		if p, ok := m.pods[c.PodID]; ok {
			m.names[containerKey(c.Config, p)] = c.ID
		}
	}
	return nil
}

// saveContainer writes c's record atomically; durable adds the fsyncs.
// A kill -9 loses no written page, so only a power loss can undo a
// non-durable write: records whose loss recovery survives (Creating: its
// parts are orphans the start-up sweep removes; Removing: the Created
// record left is removed again by the client's retry) skip them.
func (m *Manager) saveContainer(c *Container, durable bool) error {
	cfg, err := protojson.Marshal(c.Config)
	if err != nil {
		return err
	}
	r := containerRecord{Container: *c, Config: cfg}
	for _, mnt := range c.Mounts {
		raw, err := protojson.Marshal(mnt)
		if err != nil {
			return err
		}
		r.Mounts = append(r.Mounts, raw)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(m.containerDir(), c.ID+".json"), data, 0o600, durable)
}

// ReserveContainer claims the container's name in its pod and an ID; the
// returned release undoes the claim if creation fails.
func (m *Manager) ReserveContainer(pod *Pod, cfg *runtimeapi.ContainerConfig) (id string, release func(), err error) {
	key := containerKey(cfg, pod)
	m.mu.Lock()
	defer m.mu.Unlock()
	if other, ok := m.names[key]; ok {
		return "", nil, fmt.Errorf("container %s: %w by %s", key, ErrContainerNameReserved, other)
	}
	id = newID()
	m.names[key] = id
	return id, func() {
		m.mu.Lock()
		if m.names[key] == id {
			delete(m.names, key)
		}
		m.mu.Unlock()
	}, nil
}

// BeginContainer durably records that a container is being created, before
// any of its parts exists; the record stays invisible to Get and List.
func (m *Manager) BeginContainer(c *Container) error {
	cc := *c
	cc.Phase = Creating
	if err := m.saveContainer(&cc, false); err != nil {
		return fmt.Errorf("record container %s: %w", c.ID, err)
	}
	return nil
}

// AddContainer records a created container durably.
func (m *Manager) AddContainer(c *Container) error {
	cc := *c
	cc.Phase = Created
	if err := m.saveContainer(&cc, true); err != nil {
		return fmt.Errorf("record container %s: %w", c.ID, err)
	}
	m.mu.Lock()
	m.containers[c.ID] = &cc
	m.mu.Unlock()
	return nil
}

// UpdateContainer changes a container's record durably (a phase, what is
// left of it).
func (m *Manager) UpdateContainer(id string, f func(*Container)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.containers[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, ErrContainerNotFound)
	}
	cc := *c
	f(&cc)
	if err := m.saveContainer(&cc, cc.Phase != Removing); err != nil {
		return fmt.Errorf("record container %s: %w", id, err)
	}
	m.containers[id] = &cc
	return nil
}

// RemoveContainer forgets a container; a missing one is not an error.
func (m *Manager) RemoveContainer(id string) error {
	if err := os.Remove(filepath.Join(m.containerDir(), id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove container record %s: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.containers[id]; ok {
		if p, ok := m.pods[c.PodID]; ok {
			delete(m.names, containerKey(c.Config, p))
		}
		delete(m.containers, id)
	}
	return nil
}

// GetContainer finds a container by ID or unique ID prefix.
func (m *Manager) GetContainer(id string) (*Container, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if c, ok := m.containers[id]; ok {
		cc := *c
		return &cc, nil
	}
	var found *Container
	if id != "" {
		for cid, c := range m.containers {
			if strings.HasPrefix(cid, id) {
				if found != nil {
					return nil, fmt.Errorf("%q: %w", id, ErrAmbiguous)
				}
				found = c
			}
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%q: %w", id, ErrContainerNotFound)
	}
	cc := *found
	return &cc, nil
}

// ContainersView lists containers like Containers, without copying them:
// the records themselves, which the caller must not modify. A record is
// never changed once stored (updates store a new one), so each is a
// consistent snapshot. For lists answered often, at scale.
func (m *Manager) ContainersView(podID string) []*Container {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Container, 0, len(m.containers))
	for _, c := range m.containers {
		if podID == "" || c.PodID == podID {
			out = append(out, c)
		}
	}
	return out
}

// Containers lists containers, of one pod when podID is not empty.
func (m *Manager) Containers(podID string) []*Container {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*Container
	for _, c := range m.containers {
		if podID == "" || c.PodID == podID {
			cc := *c
			out = append(out, &cc)
		}
	}
	return out
}
