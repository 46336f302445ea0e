package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crivet/crivet/oci/cgroup"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeHost is a host like ours: root without CAP_SYS_RESOURCE, cgroup v1
// without hugetlb, swap accounting on, AppArmor off.
func fakeHost() *Host {
	return &Host{
		Caps:        append(slices.Clone(DefaultCaps), "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_TIME"),
		OOMScoreAdj: 0,
		HardRlimits: map[string]uint64{"RLIMIT_NOFILE": 20000},
		Swap:        true,
		Hostname:    "node-1",
	}
}

func TestProcessArgsFollowKubernetesRules(t *testing.T) {
	img := Image{Entrypoint: []string{"/ep"}, Cmd: []string{"cmd1", "cmd2"}}
	tests := []struct {
		name          string
		command, args []string
		img           Image
		want          []string
	}{
		{"image only", nil, nil, img, []string{"/ep", "cmd1", "cmd2"}},
		{"args replace cmd, keep entrypoint", nil, []string{"a"}, img, []string{"/ep", "a"}},
		{"command replaces entrypoint and cmd", []string{"/bin/sh"}, nil, img, []string{"/bin/sh"}},
		{"command and args", []string{"/bin/sh", "-c"}, []string{"echo"}, img, []string{"/bin/sh", "-c", "echo"}},
		{"cmd without entrypoint", nil, nil, Image{Cmd: []string{"sh"}}, []string{"sh"}},
		{"reset entrypoint [\"\"]", nil, nil, Image{Entrypoint: []string{""}, Cmd: []string{"sh"}}, []string{"sh"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := processArgs(tc.command, tc.args, tc.img)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := processArgs(nil, nil, Image{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty command: err = %v", err)
	}
}

func TestWorkingDirPrefersConfigThenImage(t *testing.T) {
	for _, tc := range []struct{ cfg, img, want string }{
		{"", "", "/"},
		{"", "/srv", "/srv"},
		{"", "srv", "/srv"},
		{"/work/", "/srv", "/work"},
	} {
		if got, err := workingDir(tc.cfg, tc.img); err != nil || got != tc.want {
			t.Errorf("workingDir(%q, %q) = %q, %v; want %q", tc.cfg, tc.img, got, err, tc.want)
		}
	}
	if _, err := workingDir("rel", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("relative config dir: err = %v", err)
	}
}

func TestCapabilitySets(t *testing.T) {
	h := fakeHost()
	cap := func(add, drop, ambient []string) *runtimeapi.Capability {
		return &runtimeapi.Capability{AddCapabilities: add, DropCapabilities: drop, AddAmbientCapabilities: ambient}
	}
	sorted := func(names ...string) []string { sortCaps(names); return names }
	without := func(set []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(set), func(s string) bool { return slices.Contains(drop, s) })
	}
	tests := []struct {
		name       string
		c          *runtimeapi.Capability
		privileged bool
		want       []string
		ambient    []string
		err        error
	}{
		{name: "defaults", want: sorted(slices.Clone(DefaultCaps)...)},
		{name: "add NET_ADMIN", c: cap([]string{"NET_ADMIN"}, nil, nil), want: sorted(append(slices.Clone(DefaultCaps), "CAP_NET_ADMIN")...)},
		{name: "add with CAP_ prefix, any case", c: cap([]string{"cap_sys_time"}, nil, nil), want: sorted(append(slices.Clone(DefaultCaps), "CAP_SYS_TIME")...)},
		{name: "drop NET_RAW", c: cap(nil, []string{"NET_RAW"}, nil), want: sorted(without(DefaultCaps, "CAP_NET_RAW")...)},
		{name: "add ALL is what crivet holds", c: cap([]string{"ALL"}, nil, nil), want: sorted(slices.Clone(h.Caps)...)},
		{name: "drop ALL", c: cap(nil, []string{"ALL"}, nil), want: nil},
		{name: "drop ALL then add one", c: cap([]string{"NET_BIND_SERVICE"}, []string{"ALL"}, nil), want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "add ALL then drop one", c: cap([]string{"ALL"}, []string{"SYS_ADMIN"}, nil), want: sorted(without(h.Caps, "CAP_SYS_ADMIN")...)},
		{name: "privileged ignores drops", c: cap(nil, []string{"ALL"}, nil), privileged: true, want: sorted(slices.Clone(h.Caps)...)},
		{name: "ambient is inheritable and permitted", c: cap(nil, []string{"ALL"}, []string{"NET_BIND_SERVICE"}), want: []string{"CAP_NET_BIND_SERVICE"}, ambient: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "unknown capability", c: cap([]string{"FLY"}, nil, nil), err: ErrInvalid},
		{name: "capability crivet lacks", c: cap([]string{"SYS_RESOURCE"}, nil, nil), err: ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := capabilities(tc.c, tc.privileged, h)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, set := range [][]string{got.Bounding, got.Effective, got.Permitted} {
				if !slices.Equal(set, tc.want) {
					t.Fatalf("got %v, want %v", set, tc.want)
				}
			}
			if !slices.Equal(got.Ambient, tc.ambient) || !slices.Equal(got.Inheritable, tc.ambient) {
				t.Fatalf("ambient %v inheritable %v, want %v", got.Ambient, got.Inheritable, tc.ambient)
			}
		})
	}
}

func TestResourcesAdaptToHost(t *testing.T) {
	h := fakeHost()
	mem := int64(64 << 20)
	r := &runtimeapi.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, CpusetCpus: "0",
		MemoryLimitInBytes: mem,
		HugepageLimits:     []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}},
	}
	got, err := resources(r, h)
	if err != nil {
		t.Fatal(err)
	}
	if *got.CPU.Shares != 512 || *got.CPU.Quota != 50000 || *got.CPU.Period != 100000 || got.CPU.Cpus != "0" {
		t.Errorf("cpu = %+v", got.CPU)
	}
	if *got.Memory.Limit != mem || *got.Memory.Swap != mem {
		t.Errorf("memory limit %d swap %d, want both %d (no swap by default)", *got.Memory.Limit, *got.Memory.Swap, mem)
	}
	if len(got.HugepageLimits) != 0 {
		t.Errorf("kubelet's zero hugepage limits kept without a hugetlb controller: %v", got.HugepageLimits)
	}

	r.HugepageLimits[0].Limit = 2 << 20
	if _, err := resources(r, h); !errors.Is(err, ErrUnsupported) {
		t.Errorf("real hugepage limit without controller: err = %v", err)
	}
	withHugetlb := *h
	withHugetlb.Hugetlb = true
	if got, err := resources(r, &withHugetlb); err != nil || len(got.HugepageLimits) != 2 {
		t.Errorf("with hugetlb: %v, %v", got.HugepageLimits, err)
	}

	noSwap := *h
	noSwap.Swap = false
	r.HugepageLimits = nil
	if got, _ := resources(r, &noSwap); got.Memory.Swap != nil {
		t.Errorf("swap set without swap accounting")
	}
	if _, err := resources(&runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1"}}, h); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unified on v1: err = %v", err)
	}
	if got, err := resources(nil, h); err != nil || got.CPU != nil || got.Memory != nil {
		t.Errorf("nil resources: %+v, %v", got, err)
	}
}

func TestOOMScoreAdjIsClampedWithoutSysResource(t *testing.T) {
	h := fakeHost()
	h.OOMScoreAdj = -100
	for _, tc := range []struct {
		in, want  int
		sysResour bool
	}{
		{-998, -100, false}, {-100, -100, false}, {500, 500, false}, {2000, 1000, false},
		{-998, -998, true}, {-5000, -1000, true},
	} {
		h.SysResource = tc.sysResour
		if got := oomScoreAdj(tc.in, h); got != tc.want {
			t.Errorf("oomScoreAdj(%d, sys_resource=%v) = %d, want %d", tc.in, tc.sysResour, got, tc.want)
		}
	}
}

func TestRlimitsAreCappedAtCrivetsHardLimit(t *testing.T) {
	h := fakeHost()
	got, err := rlimits([]specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1 << 20, Hard: 1 << 20}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 0}}, h)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Hard != 20000 || got[0].Soft != 20000 || got[1].Hard != 0 {
		t.Fatalf("got %+v", got)
	}
	h.SysResource = true
	if got, _ := rlimits([]specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1 << 20, Hard: 1 << 20}}, h); got[0].Hard != 1<<20 {
		t.Fatalf("with CAP_SYS_RESOURCE: %+v", got)
	}
	if _, err := rlimits([]specs.POSIXRlimit{{Type: "RLIMIT_WINGS"}}, h); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown type: err = %v", err)
	}
}

func mountAt(ms []specs.Mount, dst string) *specs.Mount {
	for i := range ms {
		if ms[i].Destination == dst {
			return &ms[i]
		}
	}
	return nil
}

func TestMountsMergeDefaultsFilesAndCRIMounts(t *testing.T) {
	dir := t.TempDir()
	files := SandboxFiles{Hostname: dir + "/hostname", Hosts: dir + "/hosts", ResolvConf: dir + "/resolv.conf", Shm: dir + "/shm"}
	data := filepath.Join(dir, "data")
	link := filepath.Join(dir, "link")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	cfg := &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{
		{ContainerPath: "/data/deep/er", HostPath: data, Readonly: true},
		{ContainerPath: "/data", HostPath: link},
		{ContainerPath: "/etc/hosts", HostPath: data + "/hosts-from-kubelet"},
		{ContainerPath: "/new", HostPath: filepath.Join(dir, "made/by/spec")},
	}}
	ms, prop, err := buildMounts(cfg, files, false, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if prop != "" {
		t.Errorf("rootfs propagation %q for private mounts", prop)
	}
	for _, dst := range []string{"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} {
		if mountAt(ms, dst) == nil {
			t.Errorf("no %s mount", dst)
		}
	}
	if m := mountAt(ms, "/sys"); !slices.Contains(m.Options, "ro") {
		t.Errorf("/sys of an unprivileged container: %v", m.Options)
	}
	if m := mountAt(ms, "/dev/shm"); m.Source != files.Shm || !slices.Contains(m.Options, "rw") {
		t.Errorf("/dev/shm = %+v, want the pod's, writable", m)
	}
	if m := mountAt(ms, "/etc/hostname"); !slices.Contains(m.Options, "ro") {
		t.Errorf("/etc/hostname on a read-only rootfs: %v", m.Options)
	}
	if m := mountAt(ms, "/etc/hosts"); m.Source != data+"/hosts-from-kubelet" {
		t.Errorf("CRI mount must win over the sandbox file: %+v", m)
	}
	if m := mountAt(ms, "/data"); m.Source != data || !slices.Equal(m.Options, []string{"rbind", "rprivate", "rw"}) {
		t.Errorf("/data = %+v (symlink resolved, private, rw)", m)
	}
	if m := mountAt(ms, "/data/deep/er"); !slices.Contains(m.Options, "ro") {
		t.Errorf("read-only CRI mount: %+v", m)
	}
	if st, err := os.Stat(filepath.Join(dir, "made/by/spec")); err != nil || !st.IsDir() {
		t.Errorf("missing host path not created: %v", err)
	}
	idx := func(dst string) int {
		return slices.IndexFunc(ms, func(m specs.Mount) bool { return m.Destination == dst })
	}
	if idx("/data") > idx("/data/deep/er") {
		t.Errorf("/data would hide /data/deep/er: %v", ms)
	}
	if n := len(slices.DeleteFunc(slices.Clone(ms), func(m specs.Mount) bool { return m.Destination != "/dev/shm" })); n != 1 {
		t.Errorf("%d mounts at /dev/shm", n)
	}

	priv, _, err := buildMounts(&runtimeapi.ContainerConfig{}, SandboxFiles{}, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
		if m := mountAt(priv, dst); !slices.Contains(m.Options, "rw") {
			t.Errorf("privileged %s: %v", dst, m.Options)
		}
	}
	if m := mountAt(priv, "/dev/shm"); m.Type != "tmpfs" {
		t.Errorf("no pod shm: /dev/shm = %+v, want a private tmpfs", m)
	}

	devMount, _, err := buildMounts(&runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/dev", HostPath: "/dev"}}}, files, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range devMount {
		if strings.HasPrefix(m.Destination, "/dev/") {
			t.Errorf("%s kept although /dev is a CRI mount", m.Destination)
		}
	}
}

func TestMountOptionErrors(t *testing.T) {
	dir := t.TempDir()
	host2c := runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
	tests := []struct {
		name string
		m    *runtimeapi.Mount
		opt  string
		err  error
	}{
		{name: "recursive read-only", m: &runtimeapi.Mount{ContainerPath: "/m", HostPath: dir, Readonly: true, RecursiveReadOnly: true}, opt: "rro"},
		{name: "rro needs read-only", m: &runtimeapi.Mount{ContainerPath: "/m", HostPath: dir, RecursiveReadOnly: true}, err: ErrInvalid},
		{name: "rro needs private propagation", m: &runtimeapi.Mount{ContainerPath: "/m", HostPath: dir, Readonly: true, RecursiveReadOnly: true, Propagation: host2c}, err: ErrInvalid},
		{name: "relative container path", m: &runtimeapi.Mount{ContainerPath: "m", HostPath: dir}, err: ErrInvalid},
		{name: "image volume", m: &runtimeapi.Mount{ContainerPath: "/m", Image: &runtimeapi.ImageSpec{Image: "busybox"}}, err: ErrUnsupported},
		{name: "selinux relabel is ignored", m: &runtimeapi.Mount{ContainerPath: "/m", HostPath: dir, SelinuxRelabel: true}, opt: "rw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, _, err := criMount(tc.m, false)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Contains(b.opts, tc.opt) {
				t.Fatalf("opts %v, err %v; want %q", b.opts, err, tc.opt)
			}
		})
	}
}

func TestSeccompProfileSelection(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "block-chmod.json", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod","fchmodat"],"action":"SCMP_ACT_ERRNO"}]}`)
	abs := filepath.Join(dir, "block-chmod.json")
	s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: DefaultCaps}}}
	tests := []struct {
		name       string
		p          *runtimeapi.SecurityProfile
		legacy     string
		privileged bool
		want       string // "", "default", "localhost"
		err        error
	}{
		{name: "nil is unconfined", want: ""},
		{name: "empty profile is RuntimeDefault", p: &runtimeapi.SecurityProfile{}, want: "default"},
		{name: "unconfined", p: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, want: ""},
		{name: "localhost absolute", p: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: abs}, want: "localhost"},
		{name: "localhost relative to profile root", p: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "block-chmod.json"}, want: "localhost"},
		{name: "localhost missing file", p: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: dir + "/nope.json"}, err: os.ErrNotExist},
		{name: "privileged ignores profiles", p: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: abs}, privileged: true, want: ""},
		{name: "legacy runtime/default", legacy: "runtime/default", want: "default"},
		{name: "legacy docker/default", legacy: "docker/default", want: "default"},
		{name: "legacy unconfined", legacy: "unconfined", want: ""},
		{name: "legacy localhost", legacy: "localhost/" + abs, want: "localhost"},
		{name: "legacy nonsense", legacy: "strict", err: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := seccompProfile(tc.p, tc.legacy, dir, tc.privileged, s)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch tc.want {
			case "":
				if got != nil {
					t.Fatalf("want unconfined, got %+v", got.DefaultAction)
				}
			case "default":
				if got == nil || got.DefaultAction != specs.ActErrno || len(got.Syscalls) < 10 {
					t.Fatalf("want the default profile, got %+v", got)
				}
			case "localhost":
				if got == nil || got.DefaultAction != specs.ActAllow || !slices.Contains(got.Syscalls[0].Names, "fchmodat") {
					t.Fatalf("want the file's profile, got %+v", got)
				}
			}
		})
	}
}

func TestDevicesFromConfig(t *testing.T) {
	nodes, rules, err := configDevices([]*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "r"}})
	if err != nil {
		t.Fatal(err)
	}
	n := nodes[0]
	if n.Path != "/dev/mynull" || n.Type != "c" || n.Major != 1 || n.Minor != 3 || *n.FileMode != 0o666 {
		t.Errorf("node = %+v", n)
	}
	if r := rules[0]; !r.Allow || r.Type != "c" || *r.Major != 1 || *r.Minor != 3 || r.Access != "r" {
		t.Errorf("rule = %+v", r)
	}
	if _, _, err := configDevices([]*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/x", Permissions: "rwx"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad permissions: err = %v", err)
	}
	if _, _, err := configDevices([]*runtimeapi.Device{{HostPath: "/etc/hostname", ContainerPath: "/dev/x"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("not a device: err = %v", err)
	}
	host, err := hostDevices()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(host, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" }) {
		t.Errorf("host devices without /dev/null")
	}
	if slices.ContainsFunc(host, func(d specs.LinuxDevice) bool {
		return strings.HasPrefix(d.Path, "/dev/pts/") || d.Path == "/dev/console"
	}) {
		t.Errorf("host devices include the host's ptys or console")
	}
}

// containerInput is a minimal valid input for Container.
func containerInput(t *testing.T) ContainerInput {
	return ContainerInput{
		ID:      "c1",
		Sandbox: &runtimeapi.PodSandboxConfig{Hostname: "pod-host", Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods/pod1", Sysctls: map[string]string{"kernel.shm_rmid_forced": "1"}}},
		Config: &runtimeapi.ContainerConfig{
			Envs:  []*runtimeapi.KeyValue{{Key: "FOO", Value: []byte("config")}},
			Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{OomScoreAdj: -997}},
		},
		Image:      Image{Env: []string{"PATH=/image/bin", "FOO=image", "BAR=image"}, Cmd: []string{"sh"}},
		Rootfs:     imageRoot(t),
		Namespaces: Namespaces{Network: Namespace{Path: "/run/netns/x"}, IPC: Namespace{Path: "/run/ipc/x"}, UTS: Namespace{Path: "/run/uts/x"}},
		Host:       fakeHost(),
	}
}

func TestContainerSpec(t *testing.T) {
	in := containerInput(t)
	s, err := Container(in)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := []string{"PATH=/image/bin", "HOSTNAME=pod-host", "FOO=config", "BAR=image"}
	if !slices.Equal(s.Process.Env, wantEnv) {
		t.Errorf("env = %q, want %q", s.Process.Env, wantEnv)
	}
	if s.Process.Cwd != "/" || !slices.Equal(s.Process.Args, []string{"sh"}) {
		t.Errorf("cwd %q args %q", s.Process.Cwd, s.Process.Args)
	}
	if *s.Process.OOMScoreAdj != 0 {
		t.Errorf("oom_score_adj %d, want clamped to crivet's 0", *s.Process.OOMScoreAdj)
	}
	if s.Linux.CgroupsPath != "/kubepods/pod1/crivet-c1" {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	if s.Hostname != "" {
		t.Errorf("hostname %q set while joining the pod's UTS namespace", s.Hostname)
	}
	if s.Linux.Sysctl["kernel.shm_rmid_forced"] != "1" {
		t.Errorf("sysctls %v", s.Linux.Sysctl)
	}
	if !slices.Equal(s.Linux.MaskedPaths, DefaultMaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, DefaultReadonlyPaths) {
		t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if s.Linux.Seccomp != nil || s.Process.NoNewPrivileges || s.Root.Readonly {
		t.Errorf("defaults: seccomp %v nnp %v ro %v", s.Linux.Seccomp != nil, s.Process.NoNewPrivileges, s.Root.Readonly)
	}
	if d := s.Linux.Resources.Devices; len(d) != 1 || d[0].Allow {
		t.Errorf("device rules %+v, want deny all", d)
	}
	wantNS := []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/run/netns/x"}, {Type: specs.IPCNamespace, Path: "/run/ipc/x"}, {Type: specs.UTSNamespace, Path: "/run/uts/x"}}
	if !slices.Equal(s.Linux.Namespaces, wantNS) {
		t.Errorf("namespaces %v", s.Linux.Namespaces)
	}

	in.Namespaces = Namespaces{Network: Namespace{Host: true}, UTS: Namespace{Host: true}, PID: Namespace{Host: true}, IPC: Namespace{Host: true}}
	in.Sandbox.Hostname = ""
	in.Config.Tty = true
	in.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{MaskedPaths: []string{"/bin/ls"}, ReadonlyPaths: []string{}, NoNewPrivs: true, ReadonlyRootfs: true, Seccomp: &runtimeapi.SecurityProfile{}}
	s, err = Container(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Linux.Namespaces, []specs.LinuxNamespace{{Type: specs.MountNamespace}}) {
		t.Errorf("host namespaces: %v", s.Linux.Namespaces)
	}
	if !slices.Contains(s.Process.Env, "HOSTNAME=node-1") || !slices.Contains(s.Process.Env, "TERM=xterm") || !s.Process.Terminal {
		t.Errorf("host UTS + tty env: %q", s.Process.Env)
	}
	if !slices.Equal(s.Linux.MaskedPaths, []string{"/bin/ls"}) || s.Linux.ReadonlyPaths == nil || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("given masked %v readonly %#v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if s.Linux.Seccomp == nil || !s.Process.NoNewPrivileges || !s.Root.Readonly {
		t.Errorf("security context not applied")
	}

	in.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true}
	if _, err := Container(in); !errors.Is(err, ErrInvalid) {
		t.Errorf("privileged container in unprivileged pod: err = %v", err)
	}
	in.Sandbox.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	s, err = Container(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil || len(s.Linux.Devices) == 0 || !s.Linux.Resources.Devices[0].Allow {
		t.Errorf("privileged: masked %v readonly %v devices %d rules %+v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, len(s.Linux.Devices), s.Linux.Resources.Devices)
	}

	in.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}}
	if _, err := Container(in); !errors.Is(err, ErrInvalid) {
		t.Errorf("container user namespace in a pod without one: err = %v", err)
	}
	in.Config.Linux.SecurityContext = nil
	in.Namespaces.IPC = Namespace{Host: true, Path: "/x"}
	if _, err := Container(in); !errors.Is(err, ErrInvalid) {
		t.Errorf("host and path: err = %v", err)
	}
}

func TestSandboxSpec(t *testing.T) {
	in := SandboxInput{
		ID:          "p1",
		Sandbox:     &runtimeapi.PodSandboxConfig{Hostname: "pod-host", Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{RunAsUser: i64(65535)}}},
		PauseBinary: "/usr/local/bin/crivet-pause",
		Rootfs:      t.TempDir(),
		Namespaces:  Namespaces{Network: Namespace{Path: "/run/netns/p1"}, PID: Namespace{Path: "/proc/1/ns/pid"}},
		Host:        fakeHost(),
	}
	s, err := Sandbox(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Args, []string{"/pause"}) || mountAt(s.Mounts, "/pause").Source != in.PauseBinary {
		t.Errorf("args %q, /pause mount %+v", s.Process.Args, mountAt(s.Mounts, "/pause"))
	}
	if !slices.Contains(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace}) {
		t.Errorf("infra must start a new PID namespace: %v", s.Linux.Namespaces)
	}
	if s.Hostname != "pod-host" {
		t.Errorf("hostname %q in its own UTS namespace", s.Hostname)
	}
	if s.Process.User.UID != 65535 || len(s.Process.Capabilities.Bounding) != 0 || !s.Process.NoNewPrivileges || !s.Root.Readonly {
		t.Errorf("process %+v", s.Process)
	}
	if *s.Process.OOMScoreAdj != 0 || s.Linux.CgroupsPath != "/crivet/crivet-p1" {
		t.Errorf("oom %d cgroups %q", *s.Process.OOMScoreAdj, s.Linux.CgroupsPath)
	}
	in.PauseBinary = ""
	if _, err := Sandbox(in); !errors.Is(err, ErrInvalid) {
		t.Errorf("no args: err = %v", err)
	}
}

func TestDetectHostOnThisMachine(t *testing.T) {
	h, err := DetectHost()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(h.Caps, "CAP_CHOWN") && os.Geteuid() == 0 {
		t.Errorf("root without CAP_CHOWN? caps %v", h.Caps)
	}
	if h.SysResource != slices.Contains(h.Caps, "CAP_SYS_RESOURCE") {
		t.Errorf("SysResource %v disagrees with caps", h.SysResource)
	}
	if h.HardRlimits["RLIMIT_NOFILE"] == 0 {
		t.Errorf("no RLIMIT_NOFILE")
	}
	t.Logf("host: %d caps, sys_resource=%v oom=%d v2=%v hugetlb=%v swap=%v apparmor=%v", len(h.Caps), h.SysResource, h.OOMScoreAdj, h.CgroupV2, h.Hugetlb, h.Swap, h.AppArmor)
}

// Under the systemd driver the container and the infra process become
// scopes in the pod's slice (runc's slice:prefix:name form); a cgroupfs
// parent there is a kubelet configured for the other driver, refused.
func TestCgroupsPathFollowsTheDriver(t *testing.T) {
	in := containerInput(t)
	in.CgroupDriver = cgroup.Systemd
	in.Sandbox.Linux.CgroupParent = "kubepods-burstable-pod1.slice"
	s, err := Container(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.CgroupsPath != "kubepods-burstable-pod1.slice:crivet:c1" {
		t.Errorf("container cgroups path %q", s.Linux.CgroupsPath)
	}
	in.Sandbox.Linux.CgroupParent = "/kubepods/burstable/pod1"
	if _, err := Container(in); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "cgroup_manager") {
		t.Errorf("cgroupfs parent under systemd: err = %v, want ErrInvalid naming cgroup_manager", err)
	}

	sb := SandboxInput{ID: "p1", Sandbox: &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "kubepods-pod1.slice"}},
		Rootfs: t.TempDir(), PauseBinary: "/usr/bin/crivet-pause", Host: fakeHost(), CgroupDriver: cgroup.Systemd}
	if s, err := Sandbox(sb); err != nil {
		t.Errorf("infra spec: %v", err)
	} else if s.Linux.CgroupsPath != "kubepods-pod1.slice:crivet:p1" {
		t.Errorf("infra cgroups path %q", s.Linux.CgroupsPath)
	}
	sb.CgroupDriver = cgroup.Cgroupfs
	if _, err := Sandbox(sb); !errors.Is(err, ErrInvalid) {
		t.Errorf("slice parent under cgroupfs: err = %v, want ErrInvalid", err)
	}
}
