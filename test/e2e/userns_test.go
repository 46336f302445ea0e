package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// usernsRunc is a runc that makes id-mapped mounts (≥ 1.2): $CRIVET_RUNC,
// else the tree's bin/runc (`make runc`). Debian 12's runc 1.1.5 cannot.
func usernsRunc(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CRIVET_RUNC"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "bin", "runc")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("user namespaces need runc >= 1.2: run `make runc` (bin/runc) or set CRIVET_RUNC: %v", err)
	}
	return p
}

// The mapping kubelet would give a hostUsers: false pod: container IDs
// 0-65535 to a host range of its own.
const usernsHostID, usernsLength = 300000, 65536

func usernsPodConfig(n *node, name string, sharedPID bool) *runtimeapi.PodSandboxConfig {
	cfg := crashPodConfig(n, name, sharedPID, 0)
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: usernsHostID, Length: usernsLength}}
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
	return cfg
}

// A hostUsers: false pod, as kubelet sends it, runs through runc ≥ 1.2 in
// its own user namespace: the container sees the pod's mapping, its image
// files and the pod's files owned by its root, a volume id-mapped, the
// network namespace its own (sysfs mounts); a pod sharing one PID
// namespace runs its infra process in the same user namespace. Both
// survive a kill -9 of the daemon and its restart, and are removed without
// leaving a mount, a namespace pin or a root filesystem behind.
func TestUserNamespacePod(t *testing.T) {
	n := newNode(t)
	n.extraArgs = append(n.extraArgs, "--runtime", usernsRunc(t))
	// The pod's root (a host ID without a name) must reach the run root:
	// the test's temporary directory is 0700, /run is not.
	if err := os.Chmod(n.dir, 0o711); err != nil {
		t.Fatal(err)
	}
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{})
	n.start()
	rc, ic := n.clients()
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}}); err != nil {
		t.Fatal(err)
	}

	// A volume written by the host's root, id-mapped as kubelet asks.
	vol := filepath.Join(n.dir, "vol")
	fixtures.WriteFile(t, filepath.Join(vol, "from-host"), "hello\n")
	mapping := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: usernsHostID, Length: usernsLength}}

	type started struct{ pod, ctr string }
	var all []started
	for _, shared := range []bool{false, true} {
		name := "userns"
		if shared {
			name = "userns-shared-pid"
		}
		podCfg := usernsPodConfig(n, name, shared)
		pod, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg})
		if err != nil {
			t.Fatalf("%s: RunPodSandbox: %v", name, err)
		}
		n.ids[pod.PodSandboxId] = true
		cc := crashContainerConfig("c", img.Ref)
		cc.Linux.SecurityContext.NamespaceOptions = podCfg.Linux.SecurityContext.NamespaceOptions
		if !shared {
			cc.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_CONTAINER
		}
		cc.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", HostPath: vol, UidMappings: mapping, GidMappings: mapping}}
		c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc, SandboxConfig: podCfg})
		if err != nil {
			t.Fatalf("%s: CreateContainer: %v\n%s", name, err, n.log)
		}
		n.ids[c.ContainerId] = true
		if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatalf("%s: StartContainer: %v\n%s", name, err, n.log)
		}
		all = append(all, started{pod.PodSandboxId, c.ContainerId})
	}

	exec := func(id string, cmd ...string) string {
		t.Helper()
		out, err := rc.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 20})
		if err != nil || out.ExitCode != 0 {
			t.Fatalf("exec %q: %v exit %d: %s %s", cmd, err, out.GetExitCode(), out.GetStdout(), out.GetStderr())
		}
		return string(out.Stdout)
	}
	check := func(s started) {
		t.Helper()
		if got := strings.Fields(exec(s.ctr, "cat", "/proc/self/uid_map")); strings.Join(got, " ") != "0 300000 65536" {
			t.Errorf("uid_map in the container: %q", got)
		}
		if got := strings.Fields(exec(s.ctr, "cat", "/proc/self/gid_map")); strings.Join(got, " ") != "0 300000 65536" {
			t.Errorf("gid_map in the container: %q", got)
		}
		// The image's files, the pod's files and the volume are the pod
		// root's; nothing shows as the overflow ID 65534.
		got := exec(s.ctr, "stat", "-c", "%n %u:%g", "/", "/bin/busybox", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/vol/from-host")
		for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
			if !strings.HasSuffix(line, " 0:0") {
				t.Errorf("owner in the container: %q (all of %q)", line, got)
			}
		}
		// The pod's root writes its root filesystem, its hosts file and
		// the volume. The volume's mapping works both ways: what the pod's
		// root (host ID 300000) writes lands on the disk as the host's root,
		// as the volume's other files are.
		exec(s.ctr, "sh", "-c", "echo x > /written && echo '# by the pod' >> /etc/hosts && echo y > /vol/from-pod-"+s.ctr[:8])
		st, err := os.Stat(filepath.Join(vol, "from-pod-"+s.ctr[:8]))
		if err != nil {
			t.Fatal(err)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 0 {
			t.Errorf("volume file written by the pod's root through the id-mapped mount is owned by %d on the disk, want 0", uid)
		}
		// The network namespace belongs to the pod's user namespace:
		// sysfs shows its own interfaces.
		if got := exec(s.ctr, "ls", "/sys/class/net"); !strings.Contains(got, "eth0") || !strings.Contains(got, "lo") {
			t.Errorf("/sys/class/net: %q", got)
		}
		// The container's process is the mapped root on the host.
		cs, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: s.ctr, Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		var info struct{ Pid int }
		if err := json.Unmarshal([]byte(cs.Info["info"]), &info); err != nil || info.Pid == 0 {
			t.Fatalf("container pid: %v %q", err, cs.Info["info"])
		}
		proc, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", info.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^Uid:\s+300000\s+300000\s+300000\s+300000$`).Match(proc) {
			t.Errorf("container process on the host: %s", regexp.MustCompile(`(?m)^Uid:.*$`).Find(proc))
		}
	}
	for _, s := range all {
		check(s)
	}

	// A kill -9 and a restart keep the pods' namespaces and containers.
	n.kill9()
	n.start()
	rc, _ = n.clients()
	for _, s := range all {
		check(s)
	}

	for _, s := range all {
		if _, err := rc.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.pod}); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.pod}); err != nil {
			t.Fatal(err)
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if strings.Contains(line, n.dir) && !strings.Contains(line, filepath.Join(n.root, "storage")) {
			t.Errorf("mount left after the pods' removal: %s", line)
		}
	}
	for _, d := range []string{"sandboxes", "rootfs", "bundles"} {
		if ents, _ := os.ReadDir(filepath.Join(n.dir, "run", d)); len(ents) > 0 {
			t.Errorf("%s left in the run root: %v", d, ents)
		}
	}
}

// Bad user namespace requests are refused before anything is made, each
// with InvalidArgument naming the rule.
func TestUserNamespaceRefusals(t *testing.T) {
	n := newNode(t)
	// A runc that can do user namespaces: these are refused for what they
	// ask, not for what the handler lacks.
	n.extraArgs = append(n.extraArgs, "--runtime", usernsRunc(t))
	n.start()
	rc, _ := n.clients()
	m := func(c, h uint32) *runtimeapi.IDMapping {
		return &runtimeapi.IDMapping{ContainerId: c, HostId: h, Length: usernsLength}
	}
	for _, tc := range []struct {
		name string
		set  func(*runtimeapi.NamespaceOption)
		want string
	}{
		{"two-mappings", func(o *runtimeapi.NamespaceOption) {
			o.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
				Uids: []*runtimeapi.IDMapping{m(0, 300000), m(0, 400000)}, Gids: []*runtimeapi.IDMapping{m(0, 300000)}}
		}, "exactly one UID mapping"},
		{"root-unmapped", func(o *runtimeapi.NamespaceOption) {
			o.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
				Uids: []*runtimeapi.IDMapping{m(1, 300000)}, Gids: []*runtimeapi.IDMapping{m(1, 300000)}}
		}, "container ID 0"},
		{"container-mode", func(o *runtimeapi.NamespaceOption) {
			o.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}
		}, "mode CONTAINER"},
		{"host-network", func(o *runtimeapi.NamespaceOption) {
			o.Network = runtimeapi.NamespaceMode_NODE
			o.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
				Uids: []*runtimeapi.IDMapping{m(0, 300000)}, Gids: []*runtimeapi.IDMapping{m(0, 300000)}}
		}, "hostNetwork"},
	} {
		cfg := crashPodConfig(n, tc.name, false, 0)
		tc.set(cfg.Linux.SecurityContext.NamespaceOptions)
		_, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want InvalidArgument naming %q", tc.name, err, tc.want)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(n.dir, "run", "sandboxes")); len(ents) > 0 {
		t.Errorf("a refused pod left %v", ents)
	}
}
