// Package lifecycle owns the life of containers and pods on the node:
// create, start, stop and remove, each step ordered and recorded so that a
// kill -9 at any moment is reconciled at the next start (Recover); the
// bundle layout and its config.json; the infra process of pods that share
// a PID namespace; and the stream of CRI container events, including the
// exits no request caused (a container ending on its own, an OOM kill).
//
// It composes the domain packages through the small interfaces of
// deps.go: image (create-time admission, root filesystems, image
// volumes), sandbox (pod and container records, namespaces, CNI),
// oci/spec (the OCI spec) and oci/runtime (runc and the monitors). The CRI
// server decides nothing here; it translates requests into these calls.
package lifecycle

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/crivet/crivet/internal/errclass"
	"github.com/crivet/crivet/internal/keyed"
	"github.com/crivet/crivet/oci/cdi"
	"github.com/crivet/crivet/oci/cgroup"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrState: the container is not in a state the operation applies to.
var ErrState = errclass.New(errclass.FailedPrecondition, "wrong container state")

// Config wires the manager to the domain services.
type Config struct {
	Images  Images
	Pods    Records
	Runtime Processes
	// RunRoot holds container bundles (<RunRoot>/bundles/<id>).
	RunRoot string
	// PauseBinary is the static infra program for pods sharing a PID namespace.
	PauseBinary string
	// SeccompProfileRoot resolves relative Localhost seccomp profiles.
	SeccompProfileRoot string
	// CgroupDriver places pods and containers (as Runtime's driver).
	CgroupDriver cgroup.Driver
	// Plugins see and adjust each step (NRI); nil = none.
	Plugins Plugins
	// CDI resolves the CDI devices a container asks for (nil: CDI off).
	CDI    *cdi.Registry
	Logger *slog.Logger
}

// Manager runs the lifecycle. It is the only writer of bundles and the
// only publisher of container events.
type Manager struct {
	cfg     Config
	images  Images
	pods    Records
	rt      Processes
	log     *slog.Logger
	events  *bus
	plugins Plugins
	// locks serialise the steps that change one container's record and
	// process (update, removal) by its ID, so an update never runs on a
	// container being removed nor saves over its removal.
	locks keyed.Mutex
}

// New returns a manager; call Recover once before serving requests.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Plugins == nil {
		cfg.Plugins = noPlugins{}
	}
	return &Manager{cfg: cfg, images: cfg.Images, pods: cfg.Pods, rt: cfg.Runtime, log: cfg.Logger, events: newBus(cfg.Logger), plugins: cfg.Plugins}
}

// bundle is the OCI bundle directory of a container (or a pod's infra).
func (m *Manager) bundle(id string) string { return filepath.Join(m.cfg.RunRoot, "bundles", id) }

// Run reconciles the node with the records (see Recover) and then follows
// container exits until ctx ends, publishing the ones no request caused.
func (m *Manager) Run(ctx context.Context) error {
	exits, err := m.rt.WatchExits(ctx)
	if err != nil {
		return err
	}
	m.Recover(ctx)
	go m.followExits(ctx, exits)
	return nil
}

// writeBundle makes an OCI bundle: dir with the spec as config.json. The
// bundle lives on the run root (a tmpfs) and is rebuilt by no one after a
// crash, so it needs no fsync; its record (sandbox) is what is durable.
func writeBundle(dir string, sp *specs.Spec) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600)
}
