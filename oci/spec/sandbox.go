package spec

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/crivet/crivet/oci/cgroup"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// SandboxInput describes the infra process of a pod whose containers share
// a PID namespace: it is PID 1 of that namespace, reaps orphans, and keeps
// the namespace alive between containers.
type SandboxInput struct {
	ID      string
	Sandbox *runtimeapi.PodSandboxConfig
	// Args is the infra command line. Required unless PauseBinary is set,
	// which makes it {"/pause"}.
	Args []string
	// PauseBinary is the host path of a static infra program (crivet-pause),
	// bound read-only at /pause so that Rootfs can be an empty directory and
	// a node needs no pause image.
	PauseBinary string
	// Env and User come from the infra image config; PATH is added when
	// Env has none. The pod's run_as_user / run_as_group win over User.
	Env  []string
	User string
	// Rootfs is the host path of the infra image's root filesystem. It is
	// mounted read-only: the infra process writes nothing.
	Rootfs string
	// Namespaces to join or share with the host: Network, IPC, UTS and
	// User (the pod's pinned user namespace, if it has one). PID is
	// ignored: the infra process always starts a new PID namespace.
	Namespaces         Namespaces
	CgroupParent       string        // as ContainerInput.CgroupParent
	CgroupDriver       cgroup.Driver // as ContainerInput.CgroupDriver
	SeccompProfileRoot string        // as ContainerInput.SeccompProfileRoot
	Host               *Host         // nil means CurrentHost()
}

// Sandbox resources, as containerd gives its sandbox container: the infra
// process must be the last thing the OOM killer picks and needs almost no
// CPU.
const (
	sandboxOOMScoreAdj = -998
	sandboxCPUShares   = 2
)

// Sandbox builds the OCI spec of a pod's infra process. It runs with no
// capabilities and no_new_privs, whatever the pod's privileges: it only
// waits for signals and reaps children.
func Sandbox(in SandboxInput) (*specs.Spec, error) {
	return build("sandbox", in.ID, in.Host, func(h *Host) (*specs.Spec, error) { return sandbox(in, h) })
}

func sandbox(in SandboxInput, h *Host) (*specs.Spec, error) {
	args := slices.Clone(in.Args)
	if len(args) == 0 && in.PauseBinary != "" {
		args = []string{"/pause"}
	}
	if in.ID == "" || len(args) == 0 {
		return nil, fmt.Errorf("%w: missing ID or args", ErrInvalid)
	}
	if !filepath.IsAbs(in.Rootfs) {
		return nil, fmt.Errorf("%w: rootfs %q is not an absolute path", ErrInvalid, in.Rootfs)
	}
	psc := in.Sandbox.GetLinux().GetSecurityContext()
	userns, err := PodUserns(psc.GetNamespaceOptions())
	if err != nil {
		return nil, err
	}
	// In a pod with a user namespace the infra process runs in it too: the
	// PID namespace it starts then belongs to the pod's user namespace,
	// so the containers that join it can mount their /proc.
	if err := checkUsernsPath(userns, in.Namespaces.User); err != nil {
		return nil, err
	}
	usr, err := ResolveUser(in.Rootfs, in.User, &runtimeapi.LinuxContainerSecurityContext{
		RunAsUser:                psc.GetRunAsUser(),
		RunAsGroup:               psc.GetRunAsGroup(),
		SupplementalGroups:       psc.GetSupplementalGroups(),
		SupplementalGroupsPolicy: psc.GetSupplementalGroupsPolicy(),
	})
	if err != nil {
		return nil, err
	}
	env := []string{defaultPath}
	for _, e := range in.Env {
		env = setEnv(env, e)
	}
	ns := in.Namespaces
	ns.PID = Namespace{}
	nss, err := namespaces(ns, h.CgroupV2)
	if err != nil {
		return nil, err
	}
	shares := uint64(sandboxCPUShares)
	adj := oomScoreAdj(sandboxOOMScoreAdj, h)
	cgPath, err := cgroupsPath(in.CgroupDriver, in.CgroupParent, in.Sandbox, in.ID)
	if err != nil {
		return nil, err
	}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User:            usr,
			Args:            args,
			Env:             env,
			Cwd:             "/",
			Capabilities:    &specs.LinuxCapabilities{},
			NoNewPrivileges: true,
			OOMScoreAdj:     &adj,
		},
		Root:   &specs.Root{Path: in.Rootfs, Readonly: true},
		Mounts: baseMounts(false),
		Linux: &specs.Linux{
			Sysctl: maps.Clone(in.Sandbox.GetLinux().GetSysctls()),
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				CPU:     &specs.LinuxCPU{Shares: &shares},
			},
			CgroupsPath:   cgPath,
			Namespaces:    nss,
			MaskedPaths:   slices.Clone(DefaultMaskedPaths),
			ReadonlyPaths: slices.Clone(DefaultReadonlyPaths),
		},
	}
	if in.PauseBinary != "" {
		if !filepath.IsAbs(in.PauseBinary) {
			return nil, fmt.Errorf("%w: pause binary %q is not an absolute path", ErrInvalid, in.PauseBinary)
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/pause", Type: "bind", Source: in.PauseBinary, Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}})
	}
	if uts := ns.UTS; !uts.Host && uts.Path == "" {
		s.Hostname = in.Sandbox.GetHostname()
	}
	//nolint:staticcheck // the deprecated path is what older kubelets send
	if s.Linux.Seccomp, err = seccompProfile(psc.GetSeccomp(), psc.GetSeccompProfilePath(), in.SeccompProfileRoot, false, s); err != nil {
		return nil, err
	}
	return s, nil
}
