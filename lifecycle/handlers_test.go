package lifecycle

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A node whose kernel lacks mount_setattr (before 5.12): runc knows
// "rro", but the handler cannot make recursive read-only mounts, so a
// container asking for one is refused before anything is made, with a
// message naming the handler and its runc. A plain read-only mount is
// fine.
func TestRecursiveReadOnlyMountIsRefusedOnAHandlerWithoutIt(t *testing.T) {
	if _, err := os.Stat("/usr/bin/runc"); err != nil {
		t.Skip("no /usr/bin/runc")
	}
	dir := t.TempDir()
	rt, err := runtime.New(runtime.Config{
		Runc: "/usr/bin/runc", Root: filepath.Join(dir, "runc"), StateDir: filepath.Join(dir, "containers"),
		Kernel: &runtime.Kernel{Release: "5.10.0-28-amd64"},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &Manager{rt: rt}
	pod := &sandbox.Pod{ID: "p", RuntimeHandler: ""}
	ctr := func(rro bool) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: dir, Readonly: true, RecursiveReadOnly: rro}}}
	}
	if err := m.checkHandlerFeatures(pod, ctr(false)); err != nil {
		t.Fatalf("a read-only mount: %v", err)
	}
	err = m.checkHandlerFeatures(pod, ctr(true))
	if !errors.Is(err, spec.ErrUnsupported) || !strings.Contains(err.Error(), `"runc"`) || !strings.Contains(err.Error(), "/usr/bin/runc") || !strings.Contains(err.Error(), "/data") {
		t.Fatalf("a recursive read-only mount: %v; want ErrUnsupported naming the mount, the handler and its runc", err)
	}
}
