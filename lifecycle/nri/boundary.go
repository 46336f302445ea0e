package nri

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrRefused: a plugin's adjustment crosses the boundary crivet keeps
// around its signature decision; the create fails with it.
var ErrRefused = errors.New("NRI adjustment refused")

// ReservedAnnotationPrefix: annotations under it are crivet's to set;
// no plugin may add, change or remove one.
const ReservedAnnotationPrefix = "io.crivet."

// The boundary. By the time plugins are asked, crivet has admitted the
// image against the pod namespace's signature policy (at pull and again at
// create) and made the container's root filesystem from exactly that
// image; plugins adjust what the process gets around it (env, mounts,
// devices, resources, hooks, rlimits). Nothing a plugin returns may swap
// what runs as the root filesystem or join the process to another
// container's view of files, since either would run content the policy
// never admitted as if it had been:
//
//   - a mount at "/" (or a relative destination, which runc resolves
//     against the root) would cover the verified root filesystem;
//   - a change to the mount or user namespace would join the process to
//     another mount table (another container's image, or the host's) or
//     change whose IDs own the verified files;
//   - crivet's own annotations (io.crivet.*) are not a plugin's to set;
//   - CDI devices are resolved from the node's CDI spec files (the same
//     registry as a request's cdi_devices), and the spec they edit is held
//     to the same root check (checkRootKept); with CDI off they are
//     refused, since an adjustment that cannot be applied must not be
//     silently dropped.
//
// The image reference, the image ID and the decision are in crivet's
// container record, which no plugin call can reach; the request's
// Container.Image only tells plugins what was verified.
func checkAdjustment(adj *api.ContainerAdjustment, cdi bool) error {
	if adj == nil {
		return nil
	}
	for _, m := range adj.GetMounts() {
		dest, removal := m.IsMarkedForRemoval()
		if removal {
			continue // dropping a mount crivet added leaves the root alone
		}
		if !filepath.IsAbs(dest) || filepath.Clean(dest) == "/" {
			return fmt.Errorf("%w: a mount at %q would replace the root filesystem of the verified image", ErrRefused, dest)
		}
	}
	for _, ns := range adj.GetLinux().GetNamespaces() {
		t, _ := ns.IsMarkedForRemoval()
		switch specs.LinuxNamespaceType(t) {
		case specs.MountNamespace, specs.UserNamespace:
			return fmt.Errorf("%w: changing the %s namespace would run the process over another root filesystem than the verified image's", ErrRefused, t)
		}
	}
	for k := range adj.GetAnnotations() {
		key, _ := api.IsMarkedForRemoval(k)
		if strings.HasPrefix(key, ReservedAnnotationPrefix) {
			return fmt.Errorf("%w: annotation %q is crivet's own", ErrRefused, key)
		}
	}
	if len(adj.GetCDIDevices()) > 0 && !cdi {
		return fmt.Errorf("%w: CDI device %q: CDI is off on this node (cdi_spec_dirs)", ErrRefused, adj.GetCDIDevices()[0].GetName())
	}
	return nil
}

// checkRootKept is the second line: whatever the adjustment code did, the
// spec runc gets has the root file system crivet made.
func checkRootKept(before *specs.Root, sp *specs.Spec) error {
	if !reflect.DeepEqual(before, sp.Root) {
		return fmt.Errorf("%w: the adjusted spec changes the root filesystem", ErrRefused)
	}
	for _, m := range sp.Mounts {
		if !filepath.IsAbs(m.Destination) || filepath.Clean(m.Destination) == "/" {
			return fmt.Errorf("%w: the adjusted spec mounts over the root filesystem (%q)", ErrRefused, m.Destination)
		}
	}
	return nil
}
