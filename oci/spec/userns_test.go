package spec

import (
	"errors"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func idm(c, h, n uint32) *runtimeapi.IDMapping {
	return &runtimeapi.IDMapping{ContainerId: c, HostId: h, Length: n}
}

func podNS(u *runtimeapi.UserNamespace) *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, UsernsOptions: u}
}

// The rules of CRI and of critest's six user-namespace specs, and the
// host namespaces Kubernetes excludes with hostUsers: false.
func TestPodUsernsValidation(t *testing.T) {
	one := []*runtimeapi.IDMapping{idm(0, 65536, 65536)}
	for _, tc := range []struct {
		name string
		o    *runtimeapi.NamespaceOption
		want string // "" accepted; else part of the ErrInvalid message
		pod  bool   // accepted with a user namespace of its own
	}{
		{"no options", podNS(nil), "", false},
		{"no namespace options at all", nil, "", false},
		{"node", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}), "", false},
		{"pod", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}), "", true},
		{"node with mappings", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE, Uids: one, Gids: one}), "takes no ID mappings", false},
		{"two uid mappings", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idm(0, 1000, 100000), idm(0, 2000, 100000)}, Gids: one}), "exactly one UID mapping, got 2", false},
		{"two gid mappings", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: one, Gids: []*runtimeapi.IDMapping{idm(0, 1000, 10), idm(10, 2000, 10)}}), "exactly one GID mapping, got 2", false},
		{"no gid mapping", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one}), "exactly one GID mapping, got 0", false},
		{"root unmapped", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idm(1, 1000, 100000)}, Gids: []*runtimeapi.IDMapping{idm(1, 1000, 100000)}}), "container ID 0", false},
		{"empty range", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idm(0, 1000, 0)}, Gids: one}), "length 0", false},
		{"past the largest ID", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idm(0, 4294901760, 65536)}, Gids: one}), "largest ID", false},
		{"host root", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{idm(0, 0, 65536)}, Gids: one}), "host's root", false},
		{"container mode", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}), "mode CONTAINER", false},
		{"target mode", podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}), "mode TARGET", false},
		{"host network", &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE,
			UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}}, "hostNetwork", false},
		{"host PID", &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE,
			UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}}, "hostPID", false},
		{"host IPC", &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER,
			UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}}, "hostIPC", false},
		{"host network, node userns", &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE,
			UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}, "", false},
	} {
		m, err := PodUserns(tc.o)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want ErrInvalid with %q", tc.name, err, tc.want)
		case (m != nil) != tc.pod:
			t.Errorf("%s: mappings %+v", tc.name, m)
		}
	}
	m, _ := PodUserns(podNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: []*runtimeapi.IDMapping{idm(0, 200000, 1000)}}))
	if want := (specs.LinuxIDMapping{HostID: 65536, Size: 65536}); m.UIDs[0] != want || m.RootUID() != 65536 || m.RootGID() != 200000 || m.GIDs[0].Size != 1000 {
		t.Errorf("mappings %+v", m)
	}
}

// usernsInput is a container of a pod with its own user namespace, as
// kubelet sends it: the container repeats the pod's userns_options, and
// its volume carries the pod's mappings.
func usernsInput(t *testing.T) ContainerInput {
	in := containerInput(t)
	m := []*runtimeapi.IDMapping{idm(0, 300000, 65536)}
	u := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
	in.Sandbox.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: podNS(u)}
	in.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: podNS(u)}
	in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", HostPath: t.TempDir(), UidMappings: m, GidMappings: m}, {ContainerPath: "/plain", HostPath: t.TempDir()}}
	in.Namespaces.User = Namespace{Path: "/run/crivet/sandboxes/p/ns/user"}
	in.Files = SandboxFiles{Hosts: "/run/p/hosts", ResolvConf: "/run/p/resolv.conf", Hostname: "/run/p/hostname", Shm: "/run/p/shm"}
	return in
}

// A container of such a pod joins the pinned user namespace by path
// (runc takes the mappings from it: none in the spec); the pod's files and
// the mapped volume are id-mapped bind mounts, a volume without mappings
// stays a plain bind.
func TestContainerSpecInPodUserNamespace(t *testing.T) {
	in := usernsInput(t)
	s, err := Container(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: in.Namespaces.User.Path}) {
		t.Errorf("namespaces %v: no user namespace path", s.Linux.Namespaces)
	}
	if s.Linux.UIDMappings != nil || s.Linux.GIDMappings != nil {
		t.Errorf("linux mappings %v %v beside a user namespace path", s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 65536}}
	for _, dst := range []string{"/vol", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/dev/shm"} {
		m := mountAt(s.Mounts, dst)
		if m == nil || m.Type != "bind" || !slices.Equal(m.UIDMappings, want) || !slices.Equal(m.GIDMappings, want) {
			t.Errorf("%s: %+v, want an id-mapped bind mount", dst, m)
		}
	}
	if m := mountAt(s.Mounts, "/plain"); m == nil || m.UIDMappings != nil {
		t.Errorf("/plain: %+v", m)
	}

	// The same container without the pod's user namespace is refused,
	// and so is one that leaves its pod's.
	bad := usernsInput(t)
	bad.Namespaces.User = Namespace{}
	if _, err := Container(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("no user namespace pinned: err = %v", err)
	}
	bad = usernsInput(t)
	bad.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}
	if _, err := Container(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("container leaving the pod's user namespace: err = %v", err)
	}
	// Left out, the container's options mean its pod's.
	ok := usernsInput(t)
	ok.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = nil
	if _, err := Container(ok); err != nil {
		t.Errorf("container without userns options in a userns pod: %v", err)
	}
}

// Id-mapped volumes need the pod's user namespace and both mappings;
// without a user namespace the pod files are plain binds, as before.
func TestIDMappedMountRules(t *testing.T) {
	in := containerInput(t)
	in.Files = SandboxFiles{Hosts: "/run/p/hosts"}
	m := []*runtimeapi.IDMapping{idm(0, 300000, 65536)}
	in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", HostPath: t.TempDir(), UidMappings: m, GidMappings: m}}
	if _, err := Container(in); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "without a user namespace") {
		t.Errorf("id-mapped mount without a user namespace: err = %v", err)
	}
	in.Config.Mounts = nil
	s, err := Container(in)
	if err != nil {
		t.Fatal(err)
	}
	if h := mountAt(s.Mounts, "/etc/hosts"); h == nil || h.UIDMappings != nil {
		t.Errorf("/etc/hosts without a user namespace: %+v", h)
	}
	u := usernsInput(t)
	u.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", HostPath: t.TempDir(), UidMappings: m}}
	if _, err := Container(u); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "both UID and GID") {
		t.Errorf("UID mappings alone: err = %v", err)
	}
	u.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", HostPath: t.TempDir(), UidMappings: m, GidMappings: []*runtimeapi.IDMapping{idm(0, 300000, 0)}}}
	if _, err := Container(u); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty GID mapping: err = %v", err)
	}
}

// The infra process of a PID-sharing pod with a user namespace runs in
// it, so that the PID namespace it starts belongs to the pod's user
// namespace.
func TestSandboxSpecInPodUserNamespace(t *testing.T) {
	m := []*runtimeapi.IDMapping{idm(0, 300000, 65536)}
	in := SandboxInput{
		ID: "p1",
		Sandbox: &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}}}}},
		PauseBinary: "/usr/local/bin/crivet-pause",
		Rootfs:      t.TempDir(),
		Namespaces:  Namespaces{Network: Namespace{Path: "/run/p/net"}, IPC: Namespace{Path: "/run/p/ipc"}, UTS: Namespace{Path: "/run/p/uts"}, User: Namespace{Path: "/run/p/user"}},
		Host:        fakeHost(),
	}
	s, err := Sandbox(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/run/p/user"}) ||
		!slices.Contains(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace}) {
		t.Errorf("namespaces %v", s.Linux.Namespaces)
	}
	in.Namespaces.User = Namespace{}
	if _, err := Sandbox(in); !errors.Is(err, ErrInvalid) {
		t.Errorf("infra of a userns pod without the pinned namespace: err = %v", err)
	}
}
