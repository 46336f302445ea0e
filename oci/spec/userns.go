package spec

import (
	"fmt"
	"math"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UserNamespaces says that crivet builds pods with their own user
// namespace (CRI userns_options mode POD; Kubernetes hostUsers: false,
// KEP-127). Whether a node can run them also depends on the runtime
// handler's runc (id-mapped mounts: runc 1.2) and the kernel (id-mapped
// tmpfs and overlay: Linux 6.3); Status advertises the feature only
// where all three hold.
const UserNamespaces = true

// IDMappings are a pod user namespace's mappings: container IDs to host
// IDs, one range each for users and groups (kubelet sends exactly one).
type IDMappings struct {
	UIDs, GIDs []specs.LinuxIDMapping
}

// RootUID and RootGID are the host IDs of the pod's root.
func (m *IDMappings) RootUID() uint32 { return m.UIDs[0].HostID }
func (m *IDMappings) RootGID() uint32 { return m.GIDs[0].HostID }

// PodUserns validates a pod's (or container's) namespace options and
// returns the ID mappings of its own user namespace: nil when the pod
// uses the node's user namespace (mode NODE, or no userns_options at
// all, which is what older kubelets send). Errors wrap ErrInvalid.
//
// The rules are those of CRI and critest's user-namespace specs: mode
// POD takes exactly one UID and one GID range, each mapping container ID
// 0; CONTAINER and TARGET modes do not exist for user namespaces. crivet
// also refuses a range that maps the host's root into the pod, and, as
// Kubernetes' validation does for hostUsers: false, the node's network,
// PID or IPC namespace: those are owned by the host's user namespace, so
// the pod's root could not mount sysfs, procfs or mqueue in them.
func PodUserns(o *runtimeapi.NamespaceOption) (*IDMappings, error) {
	u := o.GetUsernsOptions()
	if u == nil {
		// Mode POD is the enum's zero value: only a message that is
		// there asks for it.
		return nil, nil
	}
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(u.GetUids()) > 0 || len(u.GetGids()) > 0 {
			return nil, fmt.Errorf("%w: user namespace mode NODE takes no ID mappings", ErrInvalid)
		}
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, fmt.Errorf("%w: user namespace mode %s (only POD and NODE exist for user namespaces)", ErrInvalid, u.GetMode())
	}
	for _, h := range []struct {
		what, field string
		mode        runtimeapi.NamespaceMode
	}{{"network", "hostNetwork", o.GetNetwork()}, {"PID", "hostPID", o.GetPid()}, {"IPC", "hostIPC", o.GetIpc()}} {
		if h.mode == runtimeapi.NamespaceMode_NODE {
			return nil, fmt.Errorf("%w: a pod user namespace cannot be combined with the node's %s namespace (hostUsers: false excludes %s)", ErrInvalid, h.what, h.field)
		}
	}
	uids, err := podMapping("UID", u.GetUids())
	if err != nil {
		return nil, err
	}
	gids, err := podMapping("GID", u.GetGids())
	if err != nil {
		return nil, err
	}
	return &IDMappings{UIDs: uids, GIDs: gids}, nil
}

// podMapping checks one kind of a pod's ID mappings.
func podMapping(kind string, ms []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
	if len(ms) != 1 {
		return nil, fmt.Errorf("%w: user namespace needs exactly one %s mapping, got %d", ErrInvalid, kind, len(ms))
	}
	m := ms[0]
	switch {
	case m.GetContainerId() != 0:
		return nil, fmt.Errorf("%w: user namespace %s mapping must start at container ID 0 (got %d): the pod's root must be mapped", ErrInvalid, kind, m.GetContainerId())
	case m.GetLength() == 0:
		return nil, fmt.Errorf("%w: user namespace %s mapping has length 0", ErrInvalid, kind)
	case uint64(m.GetHostId())+uint64(m.GetLength()) > math.MaxUint32:
		// 4294967295 is (uid_t)-1, never a valid ID.
		return nil, fmt.Errorf("%w: user namespace %s mapping %d+%d passes the largest ID", ErrInvalid, kind, m.GetHostId(), m.GetLength())
	case m.GetHostId() == 0:
		return nil, fmt.Errorf("%w: user namespace %s mapping would make the host's root the pod's root", ErrInvalid, kind)
	}
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.GetHostId(), Size: m.GetLength()}}, nil
}

// containerUserns checks that a container asks for its pod's user
// namespace: kubelet repeats the pod's userns_options in every container
// config (or leaves them out, which means the pod's); a container cannot
// have a user namespace of its own or leave the pod's.
func containerUserns(pod, ctr *runtimeapi.NamespaceOption) (*IDMappings, error) {
	m, err := PodUserns(pod)
	if err != nil {
		return nil, fmt.Errorf("pod: %w", err)
	}
	if c := ctr.GetUsernsOptions(); c != nil && !proto.Equal(c, pod.GetUsernsOptions()) {
		// An explicit NODE in a container of a pod without options is the
		// same thing said twice.
		if !(m == nil && c.GetMode() == runtimeapi.NamespaceMode_NODE && len(c.GetUids()) == 0 && len(c.GetGids()) == 0) {
			return nil, fmt.Errorf("%w: container user namespace options (mode %s) differ from its pod's (mode %s)", ErrInvalid, c.GetMode(), pod.GetUsernsOptions().GetMode())
		}
	}
	return m, nil
}

// criIDMappings turns a CRI mount's ID mappings into the OCI form
// (runc ≥ 1.2 makes the bind mount id-mapped with them).
func criIDMappings(ms []*runtimeapi.IDMapping) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, 0, len(ms))
	for _, m := range ms {
		out = append(out, specs.LinuxIDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()})
	}
	return out
}
