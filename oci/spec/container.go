package spec

import (
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/crivet/crivet/oci/cgroup"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Image is what the spec needs from the image config (OCI image-spec
// config fields). StopSignal is not used by the spec; it travels with the
// rest for the runtime's StopContainer.
type Image struct {
	Env, Entrypoint, Cmd []string
	WorkingDir, User     string
	StopSignal           string
}

// Namespace says how a container gets one kind of namespace: Path joins an
// existing one ("/proc/123/ns/net" or a bind-mounted pin file); Host uses
// the host's (no namespace entry in the spec); neither means a new private
// namespace. Setting both is an error.
type Namespace struct {
	Path string
	Host bool
}

// Namespaces of a container. The mount namespace is always new; a cgroup
// namespace is added on cgroup v2 for unprivileged containers (as
// containerd; on v1 it would hide nothing useful and break tools that read
// /proc/self/cgroup).
//
// User is the pod's pinned user namespace, which the container joins; its
// zero value (and Host) is the node's user namespace. A container never
// gets a private user namespace of its own: runc would need mappings, and
// the pod's other namespaces belong to the pod's user namespace. Only a
// pod whose config asks for a user namespace (userns_options mode POD)
// may set it, and such a pod must.
type Namespaces struct {
	Network, IPC, UTS, PID Namespace
	User                   Namespace
}

// SandboxFiles are host paths bound into every container of the pod at
// /etc/hostname, /etc/hosts, /etc/resolv.conf and /dev/shm. "" means none:
// the image's file stays (or, for /dev/shm, a private tmpfs is mounted). A
// CRI mount at the same container path wins.
type SandboxFiles struct {
	Hostname, Hosts, ResolvConf, Shm string
}

// ContainerInput is everything Container needs.
type ContainerInput struct {
	ID      string
	Sandbox *runtimeapi.PodSandboxConfig
	Config  *runtimeapi.ContainerConfig
	Image   Image
	// Rootfs is the host path of the mounted root filesystem.
	Rootfs     string
	Namespaces Namespaces
	Files      SandboxFiles
	// CgroupParent is the pod's cgroup parent (sandbox
	// linux.cgroup_parent, used when this is ""; the driver's default when
	// both are empty). The container goes to
	// CgroupDriver.ContainerPath(parent, ID).
	CgroupParent string
	// CgroupDriver is the node's cgroup manager; the zero value is cgroupfs.
	CgroupDriver cgroup.Driver
	// SeccompProfileRoot resolves Localhost profiles given as relative
	// paths (kubelet sends absolute ones).
	SeccompProfileRoot string
	// Rlimits from crivet's configuration; nil means none set, so the
	// container inherits crivet's limits. Hard limits above crivet's own
	// are lowered when crivet may not raise them.
	Rlimits []specs.POSIXRlimit
	// Host facts; nil means CurrentHost().
	Host *Host
}

// defaultPath is the PATH a container gets when neither its image nor its
// config sets one (docker's and containerd's).
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Container builds the OCI spec of a CRI container. Errors wrap ErrInvalid,
// ErrUnsupported or ErrUserNotFound when the request is at fault.
func Container(in ContainerInput) (*specs.Spec, error) {
	return build("container", in.ID, in.Host, func(h *Host) (*specs.Spec, error) { return container(in, h) })
}

// build runs a spec builder with the host's facts (host, or the current
// host's when nil) and says which container or pod a failure is about.
func build(kind, id string, host *Host, f func(*Host) (*specs.Spec, error)) (*specs.Spec, error) {
	var err error
	if host == nil {
		host, err = CurrentHost()
	}
	var s *specs.Spec
	if err == nil {
		s, err = f(host)
	}
	if err != nil {
		return nil, fmt.Errorf("spec for %s %s: %w", kind, id, err)
	}
	return s, nil
}

// container assembles the spec from its parts: the process (what runs and
// as whom), the mounts, the Linux settings (resources, devices,
// namespaces, cgroup), and the confinement (masked paths, seccomp).
func container(in ContainerInput, h *Host) (*specs.Spec, error) {
	if err := checkContainerInput(in); err != nil {
		return nil, err
	}
	cfg := in.Config
	sc := cfg.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	proc, err := containerProcess(in, h)
	if err != nil {
		return nil, err
	}
	userns, err := containerUserns(in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions(), sc.GetNamespaceOptions())
	if err != nil {
		return nil, err
	}
	if err := checkUsernsPath(userns, in.Namespaces.User); err != nil {
		return nil, err
	}
	mounts, rootProp, err := buildMounts(cfg, in.Files, privileged, sc.GetReadonlyRootfs(), userns)
	if err != nil {
		return nil, err
	}
	linux, err := containerLinux(in, h)
	if err != nil {
		return nil, err
	}
	linux.RootfsPropagation = rootProp
	s := &specs.Spec{
		Version: specs.Version,
		Process: proc,
		Root:    &specs.Root{Path: in.Rootfs, Readonly: sc.GetReadonlyRootfs()},
		Mounts:  mounts,
		Linux:   linux,
	}
	if uts := in.Namespaces.UTS; !uts.Host && uts.Path == "" {
		s.Hostname = in.Sandbox.GetHostname()
	}
	if !privileged {
		s.Linux.MaskedPaths = pathsOr(sc.GetMaskedPaths(), DefaultMaskedPaths)
		s.Linux.ReadonlyPaths = pathsOr(sc.GetReadonlyPaths(), DefaultReadonlyPaths)
	}
	// Seccomp last: the default profile depends on the capabilities above.
	//nolint:staticcheck // the deprecated path is what older kubelets send
	if s.Linux.Seccomp, err = seccompProfile(sc.GetSeccomp(), sc.GetSeccompProfilePath(), in.SeccompProfileRoot, privileged, s); err != nil {
		return nil, err
	}
	return s, nil
}

// checkContainerInput refuses what no spec can be built from.
func checkContainerInput(in ContainerInput) error {
	cfg := in.Config
	if in.ID == "" || cfg == nil {
		return fmt.Errorf("%w: missing ID or config", ErrInvalid)
	}
	if !filepath.IsAbs(in.Rootfs) {
		return fmt.Errorf("%w: rootfs %q is not an absolute path", ErrInvalid, in.Rootfs)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() && !in.Sandbox.GetLinux().GetSecurityContext().GetPrivileged() {
		return fmt.Errorf("%w: privileged container in a pod that is not privileged", ErrInvalid)
	}
	return nil
}

// containerProcess is what runs, where, as whom, with which environment,
// capabilities, limits and AppArmor profile.
func containerProcess(in ContainerInput, h *Host) (*specs.Process, error) {
	cfg := in.Config
	sc := cfg.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	args, err := processArgs(cfg.GetCommand(), cfg.GetArgs(), in.Image)
	if err != nil {
		return nil, err
	}
	cwd, err := workingDir(cfg.GetWorkingDir(), in.Image.WorkingDir)
	if err != nil {
		return nil, err
	}
	usr, err := ResolveUser(in.Rootfs, in.Image.User, sc)
	if err != nil {
		return nil, err
	}
	caps, err := capabilities(sc.GetCapabilities(), privileged, h)
	if err != nil {
		return nil, err
	}
	rl, err := rlimits(in.Rlimits, h)
	if err != nil {
		return nil, err
	}
	env, err := containerEnv(in, h)
	if err != nil {
		return nil, err
	}
	aa, err := apparmorProfile(sc.GetApparmor(), sc.GetApparmorProfile(), privileged, h) //nolint:staticcheck // the deprecated field is still sent by older kubelets
	if err != nil {
		return nil, err
	}
	p := &specs.Process{
		// stdin and stdin_once have no spec field: they are how the
		// runtime wires runc's stdio.
		Terminal:        cfg.GetTty(),
		User:            usr,
		Args:            args,
		Env:             env,
		Cwd:             cwd,
		Capabilities:    caps,
		Rlimits:         rl,
		NoNewPrivileges: sc.GetNoNewPrivs(),
		ApparmorProfile: aa,
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		adj := oomScoreAdj(int(r.GetOomScoreAdj()), h)
		p.OOMScoreAdj = &adj
	}
	return p, nil
}

// containerEnv: PATH and HOSTNAME first, then the image's, then the
// config's, later ones replacing earlier ones with the same key.
func containerEnv(in ContainerInput, h *Host) ([]string, error) {
	cfg := in.Config
	env := []string{defaultPath}
	hostname := in.Sandbox.GetHostname()
	if hostname == "" {
		hostname = h.Hostname
	}
	env = setEnv(env, "HOSTNAME="+hostname)
	if cfg.GetTty() {
		env = setEnv(env, "TERM=xterm")
	}
	for _, e := range in.Image.Env {
		env = setEnv(env, e)
	}
	for _, kv := range cfg.GetEnvs() {
		// CRI carries values as bytes; execve cannot pass a NUL in one.
		if strings.ContainsRune(kv.GetKey(), 0) || slices.Contains(kv.GetValue(), 0) || kv.GetKey() == "" || strings.Contains(kv.GetKey(), "=") {
			return nil, fmt.Errorf("%w: environment variable %q", ErrInvalid, kv.GetKey())
		}
		env = setEnv(env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	return env, nil
}

// containerLinux: cgroup resources and path, devices, namespaces, sysctls.
func containerLinux(in ContainerInput, h *Host) (*specs.Linux, error) {
	cfg := in.Config
	privileged := cfg.GetLinux().GetSecurityContext().GetPrivileged()
	res, err := resources(cfg.GetLinux().GetResources(), h)
	if err != nil {
		return nil, err
	}
	devs, rules, err := configDevices(cfg.GetDevices())
	if err != nil {
		return nil, err
	}
	if privileged {
		host, err := hostDevices()
		if err != nil {
			return nil, err
		}
		// A device the config names explicitly wins over the host's node.
		for _, d := range host {
			if !slices.ContainsFunc(devs, func(c specs.LinuxDevice) bool { return c.Path == d.Path }) {
				devs = append(devs, d)
			}
		}
		res.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	} else {
		res.Devices = append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, rules...)
	}
	nss, err := namespaces(in.Namespaces, h.CgroupV2 && !privileged)
	if err != nil {
		return nil, err
	}
	cgPath, err := cgroupsPath(in.CgroupDriver, in.CgroupParent, in.Sandbox, in.ID)
	if err != nil {
		return nil, err
	}
	return &specs.Linux{
		Sysctl:      maps.Clone(in.Sandbox.GetLinux().GetSysctls()),
		Resources:   res,
		CgroupsPath: cgPath,
		Namespaces:  nss,
		Devices:     devs,
	}, nil
}

// pathsOr returns given when the caller set it, even to an empty list
// (kubelet's Unmasked procMount), and def when it is nil. Over gRPC an empty
// repeated field arrives as nil, so only in-process callers can ask for
// none (kubelet's Unmasked procMount, allowed only in pods with a user
// namespace).
func pathsOr(given, def []string) []string {
	if given != nil {
		return slices.Clone(given)
	}
	return slices.Clone(def)
}

// checkUsernsPath: a pod with its own user namespace runs its containers
// in it (never silently in the node's, which would drop the isolation the
// pod asked for), and a pod without one cannot join one.
func checkUsernsPath(m *IDMappings, user Namespace) error {
	switch {
	case m != nil && user.Path == "":
		return fmt.Errorf("%w: the pod asks for a user namespace but none is pinned for it", ErrInvalid)
	case m == nil && user.Path != "":
		return fmt.Errorf("%w: user namespace %s given for a pod that uses the node's", ErrInvalid, user.Path)
	}
	return nil
}

// processArgs applies Kubernetes' rules: command replaces the image
// entrypoint (and then the image cmd is dropped too); args replace the
// image cmd.
func processArgs(command, args []string, img Image) ([]string, error) {
	var out []string
	if len(command) > 0 {
		out = append(slices.Clone(command), args...)
	} else {
		// docker writes an entrypoint of [""] to mean "reset".
		if !(len(img.Entrypoint) == 1 && img.Entrypoint[0] == "") {
			out = slices.Clone(img.Entrypoint)
		}
		if len(args) > 0 {
			out = append(out, args...)
		} else {
			out = append(out, img.Cmd...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no command specified (neither the config nor the image has one)", ErrInvalid)
	}
	return out, nil
}

// workingDir: the config's, else the image's, else "/". runc needs an
// absolute path; a relative image WORKDIR is taken from "/" as docker does,
// a relative one in the config is refused.
func workingDir(cfg, img string) (string, error) {
	switch {
	case cfg != "":
		if !path.IsAbs(cfg) {
			return "", fmt.Errorf("%w: working dir %q is not absolute", ErrInvalid, cfg)
		}
		return path.Clean(cfg), nil
	case img != "":
		return path.Join("/", img), nil
	}
	return "/", nil
}

// setEnv replaces the entry with kv's key in place, or appends kv.
func setEnv(env []string, kv string) []string {
	key, _, _ := strings.Cut(kv, "=")
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

func namespaces(ns Namespaces, cgroupNS bool) ([]specs.LinuxNamespace, error) {
	out := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	for _, n := range []struct {
		typ specs.LinuxNamespaceType
		ns  Namespace
	}{
		{specs.PIDNamespace, ns.PID},
		{specs.NetworkNamespace, ns.Network},
		{specs.IPCNamespace, ns.IPC},
		{specs.UTSNamespace, ns.UTS},
	} {
		switch {
		case n.ns.Host && n.ns.Path != "":
			return nil, fmt.Errorf("%w: %s namespace is both host and %s", ErrInvalid, n.typ, n.ns.Path)
		case n.ns.Host:
		default:
			out = append(out, specs.LinuxNamespace{Type: n.typ, Path: n.ns.Path})
		}
	}
	if ns.User.Path != "" {
		// With a path, runc takes the mappings from the namespace; the spec
		// must not repeat them (runc 1.2+ warns when they match and fails
		// when they differ). runc joins it first, so the namespaces it
		// makes for the container (mount, PID) belong to it.
		out = append(out, specs.LinuxNamespace{Type: specs.UserNamespace, Path: ns.User.Path})
	}
	if cgroupNS {
		out = append(out, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return out, nil
}
