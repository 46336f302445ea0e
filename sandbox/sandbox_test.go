package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A real CNI network: Debian's bridge, host-local and portmap plugins on
// a bridge of the test's own.
const testBridge = "crivettest0"

func cniPluginDirs(t *testing.T) []string {
	for _, d := range []string{"/usr/lib/cni", "/opt/cni/bin"} {
		if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
			return []string{d}
		}
	}
	t.Fatal("CNI plugins not installed (apt-get install containernetworking-plugins)")
	return nil
}

func newManager(t *testing.T, root string) *Manager {
	t.Helper()
	conf := filepath.Join(root, "net.d")
	os.MkdirAll(conf, 0o755)
	os.WriteFile(filepath.Join(conf, "10-test.conflist"), []byte(fmt.Sprintf(`{
  "cniVersion": "1.0.0", "name": "crivet-test",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.199.0.0/24"}]], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]}`, testBridge, filepath.Join(root, "ipam"))), 0o644)
	t.Cleanup(func() { exec.Command("ip", "link", "del", testBridge).Run() })
	m, err := New(Config{Root: filepath.Join(root, "root"), RunRoot: filepath.Join(root, "run"), CNIConfDir: conf, CNIPluginDirs: cniPluginDirs(t)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func podConfig(name string, hostPort int32) *runtimeapi.PodSandboxConfig {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:  &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns1", Uid: "uid-" + name},
		Hostname:  name + "-host",
		DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"ns1.svc.cluster.local"}, Options: []string{"ndots:5"}},
	}
	if hostPort > 0 {
		cfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: hostPort}}
	}
	return cfg
}

func mountsUnder(t *testing.T, dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			out = append(out, fields[4])
		}
	}
	return out
}

func TestPodLifecycleOnRealCNI(t *testing.T) {
	root := t.TempDir()
	m := newManager(t, root)
	ctx := context.Background()
	p, err := runPod(m, ctx, podConfig("web", 38080), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Remove(ctx, p.ID) })
	if len(p.IPs) != 1 || !strings.HasPrefix(p.IPs[0], "10.199.0.") {
		t.Fatalf("pod IPs %v", p.IPs)
	}
	// The pinned namespaces are what they claim to be.
	if out, err := exec.Command("nsenter", "--net="+p.NetNS, "ip", "-4", "-o", "addr", "show", "eth0").CombinedOutput(); err != nil || !strings.Contains(string(out), p.IPs[0]) {
		t.Fatalf("eth0 in the pod netns: %v %s", err, out)
	}
	if out, err := exec.Command("nsenter", "--net="+p.NetNS, "ip", "-o", "addr", "show", "lo").CombinedOutput(); err != nil || !strings.Contains(string(out), "127.0.0.1/8") {
		t.Fatalf("lo in the pod netns: %v %s", err, out)
	}
	if out, err := exec.Command("nsenter", "--uts="+p.UTSNS, "hostname").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "web-host" {
		t.Fatalf("hostname in the pod UTS namespace: %v %q", err, out)
	}
	_, hosts, resolv, shm := p.Files()
	if b, _ := os.ReadFile(resolv); string(b) != "search ns1.svc.cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n" {
		t.Errorf("resolv.conf %q", b)
	}
	if b, _ := os.ReadFile(hosts); !strings.Contains(string(b), p.IPs[0]+"\tweb-host") {
		t.Errorf("hosts %q", b)
	}
	if shm == "" || len(mountsUnder(t, shm)) != 1 {
		t.Errorf("pod /dev/shm not mounted: %q", shm)
	}

	// hostPort: a server inside the pod is reachable on the node's 127.0.0.1.
	var lis net.Listener
	if err := ns.WithNetNSPath(p.NetNS, func(ns.NetNS) error {
		var err error
		lis, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from the pod\n")
			c.Close()
		}
	}()
	for _, addr := range []string{"127.0.0.1:38080", p.IPs[0] + ":8080"} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != "hello from the pod\n" {
			t.Fatalf("%s answered %q", addr, b)
		}
	}

	// A second pod with the same metadata is refused.
	if _, err := runPod(m, ctx, podConfig("web", 0), "", nil); err == nil {
		t.Fatal("duplicate pod name accepted")
	}

	// A restarted manager finds the pod as it was.
	m2 := newManager(t, root)
	p2, err := m2.Get(p.ID[:12])
	if err != nil || p2.State != Ready || p2.IPs[0] != p.IPs[0] || p2.Namespace() != "ns1" {
		t.Fatalf("after restart: %+v %v", p2, err)
	}

	if err := m2.Stop(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := m2.Stop(ctx, p.ID); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	p3, _ := m2.Get(p.ID)
	if p3.State != NotReady || len(p3.IPs) != 0 {
		t.Fatalf("after stop: %+v", p3)
	}
	if _, err := os.Stat(p.NetNS); !os.IsNotExist(err) {
		t.Errorf("netns pin left after stop: %v", err)
	}
	if err := m2.Remove(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := m2.Remove(ctx, p.ID); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if left := mountsUnder(t, root); len(left) != 0 {
		t.Errorf("mounts left after remove: %v", left)
	}
	if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
	// No veth of the pod left on the bridge.
	if out, _ := exec.Command("ip", "-o", "link", "show", "master", testBridge).CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("veth left on %s: %s", testBridge, out)
	}
	if _, err := m2.Get(p.ID); err == nil {
		t.Error("removed pod still listed")
	}
}

func TestHostNetworkPodHasNoNetns(t *testing.T) {
	root := t.TempDir()
	m := newManager(t, root)
	cfg := podConfig("hostnet", 0)
	cfg.DnsConfig = nil
	cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}}
	p, err := runPod(m, context.Background(), cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.NetNS != "" || p.UTSNS != "" || len(p.IPs) != 0 || p.IPCNS == "" {
		t.Fatalf("host-network pod: %+v", p)
	}
	// The node's hostname and kubelet's hosts file; a resolv.conf of its
	// own, which a scratch image lacks (kube-proxy's, resolving the API
	// server's name on a kind worker).
	hostname, hosts, resolv, _ := p.Files()
	if hostname != "" || hosts != "" {
		t.Errorf("host-network pod has its own hostname %q / hosts %q", hostname, hosts)
	}
	node, _ := os.ReadFile("/etc/resolv.conf")
	if got, err := os.ReadFile(resolv); err != nil || string(got) != string(node) {
		t.Errorf("host-network pod without DNS config: resolv.conf %q, %v; want the node's %q", got, err, node)
	}
	cfg.Metadata.Uid = "hostnet-dns"
	cfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"192.0.2.53"}, Options: []string{"ndots:0"}}
	p2, err := runPod(m, context.Background(), cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, resolv, _ = p2.Files()
	if got, err := os.ReadFile(resolv); err != nil || string(got) != "nameserver 192.0.2.53\noptions ndots:0\n" {
		t.Errorf("host-network pod with kubelet's DNS config: resolv.conf %q, %v", got, err)
	}
	if err := m.Remove(context.Background(), p2.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(context.Background(), p.ID); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, root); len(left) != 0 {
		t.Errorf("mounts left: %v", left)
	}
}

// ContainersView shares the stored records instead of copying them: that is
// safe only while an update stores a new record rather than changing the
// one a list may still be reading.
func TestContainersViewRecordsAreSnapshots(t *testing.T) {
	m := newManager(t, t.TempDir())
	cfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}
	for _, id := range []string{"a1", "b2"} {
		if err := m.AddContainer(&Container{ID: id, PodID: "pod-" + id, Config: cfg, Bundle: "/b/" + id}); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(m.ContainersView("")); got != 2 {
		t.Fatalf("ContainersView(\"\") = %d records, want 2", got)
	}
	view := m.ContainersView("pod-a1")
	if len(view) != 1 || view[0].ID != "a1" {
		t.Fatalf("ContainersView(pod-a1) = %+v", view)
	}
	if err := m.UpdateContainer("a1", func(c *Container) { c.Phase = Removing; c.Bundle = "/changed" }); err != nil {
		t.Fatal(err)
	}
	if view[0].Phase != Created || view[0].Bundle != "/b/a1" {
		t.Fatalf("an update changed the record a list holds: %+v", *view[0])
	}
	if now, _ := m.GetContainer("a1"); now.Bundle != "/changed" || now.Phase != Removing {
		t.Fatalf("the update was lost: %+v", *now)
	}
	if err := m.RemoveContainer("a1"); err != nil {
		t.Fatal(err)
	}
	if view[0].ID != "a1" || len(m.ContainersView("pod-a1")) != 0 {
		t.Fatal("remove: the held record changed or the container is still listed")
	}
}

// What UpdateContainerResources relies on: an update of a record that a
// removal took away fails and writes nothing, so the container stays
// removed across a restart; an update of a Removing record keeps it
// Removing, so start-up recovery still finishes the removal.
func TestUpdateContainerNeverResurrectsNorUndoesRemoving(t *testing.T) {
	root := t.TempDir()
	m := newManager(t, root)
	cfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}
	for _, id := range []string{"gone1", "going2"} {
		if err := m.AddContainer(&Container{ID: id, PodID: "p", Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.RemoveContainer("gone1"); err != nil {
		t.Fatal(err)
	}
	err := m.UpdateContainer("gone1", func(c *Container) { c.Config = cfg })
	if !errors.Is(err, ErrContainerNotFound) {
		t.Fatalf("update of a removed record: %v, want ErrContainerNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(m.containerDir(), "gone1.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the removed record was written again: %v", err)
	}
	if err := m.UpdateContainer("going2", func(c *Container) { c.Phase = Removing }); err != nil {
		t.Fatal(err)
	}
	limited := &runtimeapi.ContainerConfig{Metadata: cfg.Metadata, Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}}}
	if err := m.UpdateContainer("going2", func(c *Container) { c.Config = limited }); err != nil {
		t.Fatal(err)
	}
	m2, err := New(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.GetContainer("gone1"); !errors.Is(err, ErrContainerNotFound) {
		t.Fatalf("after restart the removed container is back: %v", err)
	}
	c, err := m2.GetContainer("going2")
	if err != nil {
		t.Fatal(err)
	}
	if c.Phase != Removing || c.Config.GetLinux().GetResources().GetMemoryLimitInBytes() != 1<<30 {
		t.Fatalf("after restart: phase %v, resources %v; want Removing with the new limit", c.Phase, c.Config.GetLinux().GetResources())
	}
}
