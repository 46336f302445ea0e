package spec

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The tests in this file run generated specs with the host's real runc and
// check, from inside the container, that each rule took effect. They need
// root, runc and Debian's busybox-static (/bin/busybox).

type runcEnv struct {
	t      *testing.T
	dir    string // state, bundles, host directories
	rootfs string
	parent string // cgroup parent, removed at the end
	host   *Host
}

func newRuncEnv(t *testing.T) *runcEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("needs runc")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs busybox-static (/bin/busybox)")
	}
	h, err := CurrentHost()
	if err != nil {
		t.Fatal(err)
	}
	e := &runcEnv{t: t, dir: t.TempDir(), host: h, parent: fmt.Sprintf("/crivet-spectest-%d", os.Getpid())}
	e.rootfs = filepath.Join(e.dir, "rootfs")
	e.buildRootfs()
	t.Cleanup(e.removeCgroupParent)
	return e
}

// buildRootfs makes a busybox root filesystem with the accounts of
// critest's test-image-predefined-group.
func (e *runcEnv) buildRootfs() {
	t := e.t
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "work", "secret", "tmp"} {
		if err := os.MkdirAll(filepath.Join(e.rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The container's "/" must be searchable by non-root users.
	if err := os.Chmod(e.rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(e.rootfs, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.rootfs, "bin/busybox"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(e.rootfs, "bin", applet)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(t, e.rootfs, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\ndefault-user:x:1000:1000::/work:/bin/sh\n")
	write(t, e.rootfs, "etc/group", "root:x:0:\nwww-data:x:33:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")
	write(t, e.rootfs, "etc/secret.txt", "top secret\n")
	write(t, e.rootfs, "secret/key", "top secret\n")
}

// input is a pod with private namespaces of every kind, so the tests need
// no namespace pinning; the ID doubles as the runc container ID.
func (e *runcEnv) input(id string, cfg *runtimeapi.ContainerConfig) ContainerInput {
	return ContainerInput{
		ID:           fmt.Sprintf("spectest-%d-%s", os.Getpid(), id),
		Sandbox:      &runtimeapi.PodSandboxConfig{Hostname: "spec-test", Linux: &runtimeapi.LinuxPodSandboxConfig{}},
		Config:       cfg,
		Image:        Image{Env: []string{"PATH=/bin", "FOO=image", "BAR=image"}, Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo wrong command"}, WorkingDir: "/work"},
		Rootfs:       e.rootfs,
		CgroupParent: e.parent,
	}
}

// run runs s with runc in the foreground and returns what the container
// printed. runc run deletes the container when it exits; a failed run is
// force-deleted so no cgroup is left behind.
func (e *runcEnv) run(s *specs.Spec, id string) (string, error) {
	e.t.Helper()
	bundle := filepath.Join(e.dir, "bundles", id)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		e.t.Fatal(err)
	}
	data, err := json.Marshal(s)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	state := filepath.Join(e.dir, "state")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "runc", "--root", state, "run", "--bundle", bundle, id)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil {
		_ = exec.Command("runc", "--root", state, "delete", "--force", id).Run()
	}
	return out.String(), err
}

func (e *runcEnv) mustRun(in ContainerInput) map[string]string {
	e.t.Helper()
	s, err := Container(in)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := e.run(s, in.ID)
	if err != nil {
		e.t.Fatalf("runc run: %v\n%s", err, out)
	}
	return keyValues(out)
}

// removeCgroupParent removes the test's cgroup parent from every hierarchy
// runc used; runc removed the containers' own cgroups on delete.
func (e *runcEnv) removeCgroupParent() {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		e.t.Error(err)
		return
	}
	for _, m := range mounts {
		p := filepath.Join(m.Mountpoint, e.parent)
		if err := unix.Rmdir(p); err != nil && err != unix.ENOENT {
			e.t.Errorf("cgroup %s left behind: %v", p, err)
		}
	}
}

// fakeDevice makes a char device node 240:0 (a major reserved for local
// use, with no driver here), so the device cgroup decides an open and
// nothing real is touched. runc always allows its own defaults (/dev/null
// and friends), which would hide the rule under test.
func (e *runcEnv) fakeDevice() string {
	p := filepath.Join(e.dir, "dev240")
	if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(240, 0))); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chmod(p, 0o666); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func keyValues(out string) map[string]string {
	kv := map[string]string{}
	s := bufio.NewScanner(strings.NewReader(out))
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			kv[k] = strings.TrimSpace(v)
		}
	}
	return kv
}

func capMask(names []string) string {
	var m uint64
	for _, n := range names {
		m |= 1 << capNumbers[n]
	}
	return fmt.Sprintf("%016x", m)
}

func script(lines ...string) []string { return []string{strings.Join(lines, "\n")} }

func TestRuncUnprivilegedContainer(t *testing.T) {
	e := newRuncEnv(t)
	mem := int64(64 << 20)
	in := e.input("unpriv", &runtimeapi.ContainerConfig{
		Args: script(
			`echo uid=$(id -u) gid=$(id -g)`,
			`echo groups=$(id -G)`,
			`echo cwd=$(pwd)`,
			`echo foo=$FOO bar=$BAR hostname_env=$HOSTNAME hostname=$(hostname)`,
			`echo write=$(touch /newfile 2>&1 || true)`,
			`echo masked_file=$(cat /etc/secret.txt) masked_dir=$(ls /secret) kcore_bytes=$(head -c 16 /proc/kcore | wc -c)`,
			`echo proc_sys_write=$(sh -c 'echo 1 > /proc/sys/kernel/ns_last_pid' 2>&1 || true)`,
			`echo sys=$(grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1)`,
			`grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | tr ':' '='`,
			`echo shm_rmid_forced=$(cat /proc/sys/kernel/shm_rmid_forced) port_start=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)`,
			`echo oom=$(cat /proc/self/oom_score_adj)`,
			`echo memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)`,
			`echo nofile=$(ulimit -n):$(ulimit -Hn)`,
			`echo dev_read=$(head -c 1 /dev/mydev 2>&1)`,
			`echo dev_write=$(sh -c 'echo x > /dev/mydev' 2>&1)`,
			`echo dev_type=$(stat -c %t:%T:%F /dev/mydev)`,
		),
		Envs:    []*runtimeapi.KeyValue{{Key: "FOO", Value: []byte("config")}},
		Devices: []*runtimeapi.Device{{HostPath: e.fakeDevice(), ContainerPath: "/dev/mydev", Permissions: "r"}},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{
				MemoryLimitInBytes: mem, CpuShares: 256, OomScoreAdj: -998,
				// kubelet sends a 0 limit for every page size.
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}},
			},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser:          i64(1000),
				SupplementalGroups: []int64{1234},
				ReadonlyRootfs:     true,
				NoNewPrivs:         true,
				MaskedPaths:        append(slices.Clone(DefaultMaskedPaths), "/etc/secret.txt", "/secret"),
				Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
			},
		},
	})
	in.Sandbox.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_unprivileged_port_start": "80"}
	in.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1 << 20, Hard: 1 << 20}}
	got := e.mustRun(in)

	hard := min(e.host.HardRlimits["RLIMIT_NOFILE"], 1<<20)
	if e.host.SysResource {
		hard = 1 << 20
	}
	wantOOM := -998
	if !e.host.SysResource {
		wantOOM = max(-998, e.host.OOMScoreAdj)
	}
	want := map[string]string{
		"uid":             "1000 gid=1000",
		"cwd":             "/work",
		"foo":             "config bar=image hostname_env=spec-test hostname=spec-test",
		"write":           "touch: /newfile: Read-only file system",
		"masked_file":     "masked_dir= kcore_bytes=0",
		"proc_sys_write":  "sh: can't create /proc/sys/kernel/ns_last_pid: Read-only file system",
		"sys":             "ro",
		"CapBnd":          capMask(DefaultCaps),
		"CapEff":          "0000000000000000", // execve as non-root clears them
		"NoNewPrivs":      "1",
		"Seccomp":         "2",
		"shm_rmid_forced": "1 port_start=80",
		"oom":             strconv.Itoa(wantOOM),
		"memory":          strconv.FormatInt(mem, 10),
		"nofile":          fmt.Sprintf("%d:%d", hard, hard),
		// The device cgroup lets the read open through to the (absent)
		// driver and stops the write open.
		"dev_read":  "head: /dev/mydev: No such device or address",
		"dev_write": "sh: can't create /dev/mydev: Operation not permitted",
		"dev_type":  "f0:0:character special file",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	groups := strings.Fields(got["groups"])
	slices.Sort(groups)
	if !slices.Equal(groups, []string{"1000", "1234", "50000"}) {
		t.Errorf("groups = %q, want 1000 1234 50000 (primary, supplemental, image /etc/group)", got["groups"])
	}
}

func TestRuncStrictSupplementalGroupsAndImageUser(t *testing.T) {
	e := newRuncEnv(t)
	in := e.input("strict", &runtimeapi.ContainerConfig{
		Args: script(`echo id=$(id -u):$(id -g) groups=$(id -G)`),
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: i64(1000), SupplementalGroups: []int64{1234}, SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict,
		}},
	})
	if got := e.mustRun(in)["id"]; got != "1000:1000 groups=1000 1234" {
		t.Errorf("strict: %q", got)
	}
	in = e.input("imageuser", &runtimeapi.ContainerConfig{Args: script(`echo id=$(id -un):$(id -g)`)})
	in.Image.User = "www-data:1004"
	if got := e.mustRun(in)["id"]; got != "www-data:1004" {
		t.Errorf("image user www-data:1004: %q", got)
	}
}

func TestRuncRootCapabilitiesAndLocalhostSeccomp(t *testing.T) {
	e := newRuncEnv(t)
	profile := filepath.Join(e.dir, "block-chmod.json")
	write(t, e.dir, "block-chmod.json", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod","fchmodat","fchmodat2"],"action":"SCMP_ACT_ERRNO"}]}`)
	in := e.input("rootcaps", &runtimeapi.ContainerConfig{
		Args: script(
			`grep -E '^(CapEff|Seccomp):' /proc/self/status | tr -d '\t' | tr ':' '='`,
			`echo chmod=$(chmod 700 /tmp 2>&1)`,
			`echo nofile=$(ulimit -n)`,
		),
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"NET_RAW"}},
			Seccomp:      &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile},
		}},
	})
	got := e.mustRun(in)
	wantCaps := append(slices.DeleteFunc(slices.Clone(DefaultCaps), func(s string) bool { return s == "CAP_NET_RAW" }), "CAP_NET_ADMIN")
	if got["CapEff"] != capMask(wantCaps) {
		t.Errorf("CapEff = %s, want %s (defaults + NET_ADMIN - NET_RAW)", got["CapEff"], capMask(wantCaps))
	}
	if got["Seccomp"] != "2" || got["chmod"] != "chmod: /tmp: Operation not permitted" {
		t.Errorf("localhost profile: Seccomp=%q chmod=%q", got["Seccomp"], got["chmod"])
	}
}

func TestRuncPrivilegedContainerGetsCrivetsCapabilitiesAndHostDevices(t *testing.T) {
	e := newRuncEnv(t)
	profile := filepath.Join(e.dir, "block-hostname.json")
	write(t, e.dir, "block-hostname.json", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}`)
	in := e.input("priv", &runtimeapi.ContainerConfig{
		Args: script(
			`grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status | tr -d '\t' | tr ':' '='`,
			`echo sys=$(grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1)`,
			`echo null=$(test -c /dev/null && echo yes) kmsg=$(test -c /dev/kmsg && echo yes)`,
			`echo sethostname=$(hostname other-name 2>&1 && hostname)`,
			`echo oom=$(cat /proc/self/oom_score_adj)`,
		),
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{OomScoreAdj: 500},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Privileged: true,
				// Ignored for privileged containers (critest checks this).
				Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile},
			},
		},
	})
	in.Sandbox.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	got := e.mustRun(in)
	want := map[string]string{
		"CapEff":      capMask(e.host.Caps),
		"CapBnd":      capMask(e.host.Caps),
		"Seccomp":     "0",
		"sys":         "rw",
		"null":        "yes kmsg=yes",
		"sethostname": "other-name",
		"oom":         "500",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// TestRuncHostAdaptationsAreNeeded runs the specs crivet would have built
// without adapting to the host, to show that each adaptation is what keeps
// runc working here (and not merely harmless). Skipped where the host
// allows what the adaptation guards against.
func TestRuncHostAdaptationsAreNeeded(t *testing.T) {
	e := newRuncEnv(t)
	cfg := func() *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Args: script("true"), Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{}}}
	}
	cases := []struct {
		name   string
		skip   bool
		adjust func(in *ContainerInput, h *Host)
	}{
		{"oom_score_adj below crivet's", e.host.SysResource, func(in *ContainerInput, h *Host) {
			in.Config.Linux.Resources.OomScoreAdj = -998
			h.SysResource = true // pretend: no clamping
		}},
		{"hugetlb zero limits without a controller", e.host.Hugetlb, func(in *ContainerInput, h *Host) {
			in.Config.Linux.Resources.HugepageLimits = []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}
			h.Hugetlb = true // pretend: keep them
		}},
		{"privileged with every capability the kernel knows", e.host.SysResource, func(in *ContainerInput, h *Host) {
			in.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true}
			in.Sandbox.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
			h.Caps = capNames(^uint64(0))
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip {
				t.Skip("this host allows it")
			}
			in := e.input(fmt.Sprintf("unadapted%d", i), cfg())
			h := *e.host
			tc.adjust(&in, &h)
			in.Host = &h
			s, err := Container(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := e.run(s, in.ID)
			if err == nil {
				t.Fatalf("runc accepted the unadapted spec; the adaptation may be unnecessary here")
			}
			t.Logf("runc without the adaptation: %s", lastLine(out))

			in.Host = nil // the real host facts: must run
			in.ID += "-ok"
			e.mustRun(in)
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// hostMount makes dir a mount point with the given propagation (shared or
// private) and unmounts it at the end.
func hostMount(t *testing.T, dir string, flag uintptr) {
	t.Helper()
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if err := unix.Mount("", dir, "", flag|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
}

func TestRuncRecursiveReadOnlyMount(t *testing.T) {
	e := newRuncEnv(t)
	vol := filepath.Join(e.dir, "vol")
	sub := filepath.Join(vol, "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	hostMount(t, vol, unix.MS_PRIVATE)
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })
	in := e.input("rro", &runtimeapi.ContainerConfig{
		Args: script(
			`echo ro=$(touch /ro/sub/a 2>&1 && echo writable)`,
			`echo rro=$(touch /rro/sub/b 2>&1 && echo writable)`,
		),
		Mounts: []*runtimeapi.Mount{
			{HostPath: vol, ContainerPath: "/ro", Readonly: true},
			{HostPath: vol, ContainerPath: "/rro", Readonly: true, RecursiveReadOnly: true},
		},
	})
	got := e.mustRun(in)
	if got["ro"] != "writable" {
		t.Errorf("plain read-only mount: submount %q, want writable (ro is not recursive)", got["ro"])
	}
	if got["rro"] != "touch: /rro/sub/b: Read-only file system" {
		t.Errorf("recursive read-only mount: submount %q", got["rro"])
	}
}

func TestRuncMountPropagation(t *testing.T) {
	e := newRuncEnv(t)
	vol := filepath.Join(e.dir, "prop")
	for _, d := range []string{"in", "back", "src"} {
		if err := os.MkdirAll(filepath.Join(vol, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, vol, "src/flag", "x")

	private := filepath.Join(e.dir, "private")
	if err := os.MkdirAll(private, 0o755); err != nil {
		t.Fatal(err)
	}
	hostMount(t, private, unix.MS_PRIVATE)
	for _, p := range []runtimeapi.MountPropagation{runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL} {
		if _, err := Container(e.input("x", &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{HostPath: private, ContainerPath: "/p", Propagation: p}}})); err == nil {
			t.Errorf("%s accepted on a private host mount", p)
		}
	}

	hostMount(t, vol, unix.MS_SHARED)
	in := e.input("prop", &runtimeapi.ContainerConfig{
		Args: script(
			// Wait for the host's mount to arrive, then mount one back.
			`for i in $(seq 100); do [ -e /prop/in/flag ] && break; sleep 0.05; done`,
			`echo host_to_container=$(cat /prop/in/flag 2>&1)`,
			`mount -t tmpfs back /prop/back && touch /prop/back/from-container && echo mounted=yes`,
			`for i in $(seq 100); do [ -e /tmp/done ] && break; sleep 0.05; done`,
		),
		Mounts: []*runtimeapi.Mount{
			{HostPath: vol, ContainerPath: "/prop", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
			{HostPath: filepath.Join(e.dir, "done"), ContainerPath: "/tmp"},
		},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}},
	})
	in.Sandbox.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	s, err := Container(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.RootfsPropagation != "rshared" {
		t.Fatalf("rootfs propagation %q", s.Linux.RootfsPropagation)
	}
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := e.run(s, in.ID)
		done <- result{out, err}
	}()
	// The container runs once it is in runc's state; then mount on the host.
	state := filepath.Join(e.dir, "state")
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("runc", "--root", state, "state", in.ID).Output()
		if bytes.Contains(out, []byte(`"running"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("container never ran")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := unix.Mount(filepath.Join(vol, "src"), filepath.Join(vol, "in"), "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(filepath.Join(vol, "in"), unix.MNT_DETACH) })
	backFile := filepath.Join(vol, "back", "from-container")
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(backFile); err == nil {
			break
		}
	}
	_, backErr := os.Stat(backFile)
	_ = unix.Unmount(filepath.Join(vol, "back"), unix.MNT_DETACH)
	write(t, e.dir, "done/done", "")
	r := <-done
	if r.err != nil {
		t.Fatalf("runc run: %v\n%s", r.err, r.out)
	}
	got := keyValues(r.out)
	if got["host_to_container"] != "x" || got["mounted"] != "yes" {
		t.Errorf("container saw %q", r.out)
	}
	if backErr != nil {
		t.Errorf("container's mount did not propagate to the host: %v", backErr)
	}
}

func TestRuncSandboxInfraProcess(t *testing.T) {
	e := newRuncEnv(t)
	// busybox stands in for crivet-pause: a static binary bound at /pause
	// into an otherwise empty root filesystem. busybox picks its applet by
	// argv[0], hence the one symlink.
	empty := filepath.Join(e.dir, "infra-rootfs")
	if err := os.MkdirAll(filepath.Join(empty, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/pause", filepath.Join(empty, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	s, err := Sandbox(SandboxInput{
		ID:           fmt.Sprintf("spectest-%d-infra", os.Getpid()),
		Sandbox:      &runtimeapi.PodSandboxConfig{Hostname: "infra", Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{RunAsUser: i64(65535)}}},
		PauseBinary:  "/bin/busybox",
		Args:         []string{"/bin/sh", "-c", `echo pid=$$ uid=$(id -u) hostname=$(hostname); grep -E '^(CapEff|NoNewPrivs):' /proc/self/status | tr -d '\t' | tr ':' '='`},
		Rootfs:       empty,
		CgroupParent: e.parent,
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.run(s, fmt.Sprintf("spectest-%d-infra", os.Getpid()))
	if err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	got := keyValues(out)
	if got["pid"] != "1 uid=65535 hostname=infra" || got["CapEff"] != "0000000000000000" || got["NoNewPrivs"] != "1" {
		t.Errorf("infra process: %q", out)
	}
}
