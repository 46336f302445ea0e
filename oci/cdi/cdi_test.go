package cdi

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// specFile is a CDI spec with two devices: null0 injects a device node
// (the host's /dev/null under another container path) and env; the spec's
// own edits (one env) come with any of its devices.
const specFile = `cdiVersion: "0.6.0"
kind: crivet.test/dev
devices:
- name: null0
  containerEdits:
    env: ["CRIVET_CDI_DEVICE=null0"]
    deviceNodes:
    - path: /dev/crivet-null0
      hostPath: /dev/null
- name: env1
  containerEdits:
    env: ["CRIVET_CDI_DEVICE=env1"]
containerEdits:
  env: ["CRIVET_CDI_SPEC=crivet.test"]
`

func writeSpec(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func baseSpec() *specs.Spec {
	return &specs.Spec{Process: &specs.Process{Env: []string{"PATH=/bin"}}, Linux: &specs.Linux{}}
}

func TestRequestedTakesCDIDevicesThenAnnotationsOnce(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{
		CDIDevices: []*runtimeapi.CDIDevice{{Name: "crivet.test/dev=null0"}, {Name: "crivet.test/dev=env1"}},
		Annotations: map[string]string{
			"cdi.k8s.io/b-plugin_x": "crivet.test/dev=null0,vendor.test/gpu=1",
			"cdi.k8s.io/a-plugin_y": "vendor.test/gpu=0",
			"unrelated":             "vendor.test/gpu=9",
		},
	}
	got, err := Requested(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"crivet.test/dev=null0", "crivet.test/dev=env1", "vendor.test/gpu=0", "vendor.test/gpu=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("Requested = %q, want %q", got, want)
	}
}

func TestRequestedRefusesUnqualifiedNames(t *testing.T) {
	for name, cfg := range map[string]*runtimeapi.ContainerConfig{
		"cdi_devices": {CDIDevices: []*runtimeapi.CDIDevice{{Name: "null0"}}},
		"annotation":  {Annotations: map[string]string{"cdi.k8s.io/p_x": "gpu0"}},
	} {
		if _, err := Requested(cfg); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%s: err = %v, want ErrInvalidName", name, err)
		}
	}
}

func TestInjectAppliesDeviceNodeAndEnv(t *testing.T) {
	dir := t.TempDir()
	writeSpec(t, dir, "crivet-test.yaml", specFile)
	r := New([]string{dir})
	sp := baseSpec()
	got, err := r.Inject(sp, &runtimeapi.ContainerConfig{CDIDevices: []*runtimeapi.CDIDevice{{Name: "crivet.test/dev=null0"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"crivet.test/dev=null0"}) {
		t.Errorf("injected %q", got)
	}
	for _, e := range []string{"PATH=/bin", "CRIVET_CDI_DEVICE=null0", "CRIVET_CDI_SPEC=crivet.test"} {
		if !slices.Contains(sp.Process.Env, e) {
			t.Errorf("env %q missing from %q", e, sp.Process.Env)
		}
	}
	// /dev/null is char 1:3 on Linux; the library reads type and numbers
	// from the host path.
	i := slices.IndexFunc(sp.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/crivet-null0" })
	if i < 0 {
		t.Fatalf("no /dev/crivet-null0 in %+v", sp.Linux.Devices)
	}
	if d := sp.Linux.Devices[i]; d.Type != "c" || d.Major != 1 || d.Minor != 3 {
		t.Errorf("device %+v, want c 1:3", d)
	}
	// The device cgroup must let the container use it.
	allowed := false
	for _, d := range sp.Linux.Resources.Devices {
		if d.Allow && d.Type == "c" && d.Major != nil && *d.Major == 1 && d.Minor != nil && *d.Minor == 3 && d.Access == "rwm" {
			allowed = true
		}
	}
	if !allowed {
		t.Errorf("no device cgroup rule allows c 1:3 rwm: %+v", sp.Linux.Resources.Devices)
	}
}

func TestInjectRefusesUnknownDeviceNamingIt(t *testing.T) {
	dir := t.TempDir()
	writeSpec(t, dir, "crivet-test.yaml", specFile)
	r := New([]string{dir})
	sp := baseSpec()
	_, err := r.Inject(sp, &runtimeapi.ContainerConfig{
		CDIDevices:  []*runtimeapi.CDIDevice{{Name: "crivet.test/dev=null0"}},
		Annotations: map[string]string{"cdi.k8s.io/p_x": "crivet.test/dev=nosuch"},
	})
	if !errors.Is(err, ErrUnknownDevice) || !strings.Contains(err.Error(), "crivet.test/dev=nosuch") || strings.Contains(err.Error(), "=null0") {
		t.Fatalf("err = %v, want ErrUnknownDevice naming crivet.test/dev=nosuch alone", err)
	}
	// Nothing of the known device was applied.
	if len(sp.Process.Env) != 1 || len(sp.Linux.Devices) != 0 {
		t.Errorf("spec changed by a refused request: %+v %+v", sp.Process.Env, sp.Linux.Devices)
	}
}

func TestDisabledRefusesRequestsAndPassesOthers(t *testing.T) {
	var r *Registry = New(nil)
	if r != nil {
		t.Fatal("New(nil) is not disabled")
	}
	if _, err := r.Inject(baseSpec(), &runtimeapi.ContainerConfig{}); err != nil {
		t.Errorf("no request, CDI off: %v", err)
	}
	if _, err := r.Inject(baseSpec(), &runtimeapi.ContainerConfig{CDIDevices: []*runtimeapi.CDIDevice{{Name: "crivet.test/dev=null0"}}}); !errors.Is(err, ErrDisabled) {
		t.Errorf("request, CDI off: err = %v, want ErrDisabled", err)
	}
	if st := r.State(); st.Enabled {
		t.Errorf("State of disabled CDI: %+v", st)
	}
}

func TestStateReportsDirsDevicesAndSpecErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(t.TempDir(), "absent")
	writeSpec(t, dir, "crivet-test.yaml", specFile)
	writeSpec(t, dir, "broken.json", `{"cdiVersion": "0.6.0", "kind": "bad", "devices": []}`)
	st := New([]string{dir, missing}).State()
	if !st.Enabled || !slices.Equal(st.SpecDirs, []string{dir, missing}) {
		t.Errorf("State = %+v", st)
	}
	if !slices.Equal(st.Devices, []string{"crivet.test/dev=env1", "crivet.test/dev=null0"}) {
		t.Errorf("devices = %q", st.Devices)
	}
	if !slices.Equal(st.MissingDirs, []string{missing}) {
		t.Errorf("missing dirs = %q", st.MissingDirs)
	}
	broken := filepath.Join(dir, "broken.json")
	if len(st.Errors[broken]) == 0 {
		t.Errorf("no error reported for %s: %+v", broken, st.Errors)
	}
}
