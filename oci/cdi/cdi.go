// Package cdi resolves Container Device Interface devices (the CDI
// specification, tags.cncf.io/container-device-interface) into OCI specs:
// the devices a container asks for by fully qualified name
// ("vendor.com/class=name"), in ContainerConfig.cdi_devices or in the
// container's cdi.k8s.io/ annotations, are looked up in the spec files of
// the configured directories and their edits (device nodes, env, mounts,
// hooks) applied to the spec before the bundle is written.
//
// It owns nothing on disk: the spec files are the device drivers'. The
// library's cache rescans a directory when fsnotify reports a change, so
// a driver that writes a spec file (a DRA driver into /var/run/cdi) is
// seen by the next create without a restart.
package cdi

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/crivet/crivet/internal/errclass"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
)

// DefaultSpecDirs are where CDI spec files live unless configured: the
// static directory, then the dynamic one (which wins on a conflict).
var DefaultSpecDirs = []string{cdi.DefaultStaticDir, cdi.DefaultDynamicDir}

var (
	// ErrUnknownDevice: a requested device is in no spec file. The server
	// maps it to InvalidArgument; the message names the devices.
	ErrUnknownDevice = errclass.New(errclass.InvalidArgument, "unknown CDI device")
	// ErrInvalidName: a requested device name is not a fully qualified
	// CDI name (InvalidArgument).
	ErrInvalidName = errclass.New(errclass.InvalidArgument, "invalid CDI device name")
	// ErrDisabled: a container asks for CDI devices on a node configured
	// without CDI spec directories (InvalidArgument).
	ErrDisabled = errclass.New(errclass.InvalidArgument, "CDI is disabled on this node (cdi_spec_dirs is empty)")
)

// Registry is the node's CDI devices. A nil *Registry is CDI disabled.
type Registry struct {
	cache *cdi.Cache
	dirs  []string
}

// New watches dirs (in increasing priority) for CDI spec files. No dirs
// disables CDI: it returns nil, and Inject refuses any device request.
// Missing directories are fine (most nodes have none); they are reported
// by State and picked up when they appear.
func New(dirs []string) *Registry {
	dirs = slices.DeleteFunc(slices.Clone(dirs), func(d string) bool { return d == "" })
	if len(dirs) == 0 {
		return nil
	}
	// NewCache's error is documented to be always nil.
	c, _ := cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(true))
	return &Registry{cache: c, dirs: slices.Clone(dirs)}
}

// Requested lists the devices cfg asks for: its cdi_devices, then those of
// its cdi.k8s.io/ annotations (kubelet's device-plugin path before
// cdi_devices existed), each once, in a stable order. Only the container's
// annotations count: a pod's annotations are written by whoever creates
// the pod, while a container's are kubelet's (device plugins), so a pod
// author cannot ask for a host device this way.
func Requested(cfg *runtimeapi.ContainerConfig) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, d := range cfg.GetCDIDevices() {
		if !parser.IsQualifiedName(d.GetName()) {
			return nil, fmt.Errorf("%w: cdi_devices: %q is not vendor.com/class=name", ErrInvalidName, d.GetName())
		}
		add(d.GetName())
	}
	// ParseAnnotations ranges over a map: sort the annotation keys'
	// devices so the edits are applied in the same order every time.
	ann := map[string]string{}
	for k, v := range cfg.GetAnnotations() {
		if strings.HasPrefix(k, cdi.AnnotationPrefix) {
			ann[k] = v
		}
	}
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		_, devs, err := cdi.ParseAnnotations(map[string]string{k: ann[k]})
		if err != nil {
			return nil, fmt.Errorf("%w: annotation %s: %v", ErrInvalidName, k, err)
		}
		for _, d := range devs {
			add(d)
		}
	}
	return out, nil
}

// Inject applies the edits of the devices cfg asks for to sp, and returns
// the devices injected. A device in no spec file is ErrUnknownDevice,
// naming every such device; sp is then left as it was.
func (r *Registry) Inject(sp *specs.Spec, cfg *runtimeapi.ContainerConfig) ([]string, error) {
	devs, err := Requested(cfg)
	if err != nil || len(devs) == 0 {
		return nil, err
	}
	if err := r.InjectDevices(sp, devs); err != nil {
		return nil, err
	}
	return devs, nil
}

// InjectDevices applies the edits of the named devices to sp: devices an
// NRI plugin asks for. An unknown one is ErrUnknownDevice, naming each;
// with CDI off (r nil) any is ErrDisabled.
func (r *Registry) InjectDevices(sp *specs.Spec, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if r == nil {
		return fmt.Errorf("%w: asked for %s", ErrDisabled, strings.Join(names, ", "))
	}
	unresolved, err := r.cache.InjectDevices(sp, names...)
	if len(unresolved) > 0 {
		return fmt.Errorf("%w: %s (not in any CDI spec file in %s)", ErrUnknownDevice, strings.Join(unresolved, ", "), strings.Join(r.dirs, ", "))
	}
	if err != nil {
		return fmt.Errorf("CDI devices %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}

// State is CDI as crictl info shows it.
type State struct {
	Enabled  bool     `json:"enabled"`
	SpecDirs []string `json:"specDirs"`
	// Devices are the fully qualified names resolvable now.
	Devices []string `json:"devices"`
	// MissingDirs are spec directories that do not exist (yet): the
	// common case on a node without device drivers, watched for all that.
	MissingDirs []string `json:"missingDirs,omitempty"`
	// Errors are per spec file (or directory): a file that does not parse
	// or whose devices conflict contributes no device.
	Errors map[string][]string `json:"errors,omitempty"`
}

// State reports the spec directories, the devices found and every spec
// file or directory error.
func (r *Registry) State() State {
	if r == nil {
		return State{SpecDirs: []string{}, Devices: []string{}}
	}
	// Refresh in auto-refresh mode rescans only when the watch saw a
	// change; its error repeats GetErrors, read below per file.
	_ = r.cache.Refresh()
	st := State{Enabled: true, SpecDirs: slices.Clone(r.dirs), Devices: r.cache.ListDevices()}
	sort.Strings(st.Devices)
	add := func(path string, err error) {
		if st.Errors == nil {
			st.Errors = map[string][]string{}
		}
		st.Errors[path] = append(st.Errors[path], err.Error())
	}
	for path, errs := range r.cache.GetErrors() {
		for _, e := range errs {
			add(path, e)
		}
	}
	for dir, err := range r.cache.GetSpecDirErrors() {
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			st.MissingDirs = append(st.MissingDirs, dir)
		default:
			add(dir, err)
		}
	}
	sort.Strings(st.MissingDirs)
	return st
}
