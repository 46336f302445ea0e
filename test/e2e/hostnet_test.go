package e2e

import (
	"strings"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container of a host-network pod reads the DNS configuration kubelet
// gave the pod, though its image has no /etc/resolv.conf: kube-proxy's
// image is scratch, and on a kind worker it resolves the API server's
// name through that file.
func TestHostNetworkContainerGetsThePodsResolvConf(t *testing.T) {
	n := newNode(t)
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{})
	n.start()
	rc, ic := n.clients()
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}}); err != nil {
		t.Fatal(err)
	}
	podCfg := crashPodConfig(n, "hostnet", false, 0)
	podCfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	podCfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"192.0.2.53"}, Searches: []string{"example.test"}, Options: []string{"ndots:0"}}
	pod, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[pod.PodSandboxId] = true
	c, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: crashContainerConfig("c", img.Ref), SandboxConfig: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	n.ids[c.ContainerId] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	out, err := rc.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: c.ContainerId, Cmd: []string{"cat", "/etc/resolv.conf"}, Timeout: 10})
	want := "search example.test\nnameserver 192.0.2.53\noptions ndots:0\n"
	if err != nil || out.ExitCode != 0 || string(out.Stdout) != want {
		t.Fatalf("/etc/resolv.conf in a host-network container: %v %q %q, want %q", err, out.GetStdout(), out.GetStderr(), want)
	}
	// Still the node's network: the host's interfaces, not a pod's eth0 alone.
	links, err := rc.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: c.ContainerId, Cmd: []string{"cat", "/proc/net/dev"}, Timeout: 10})
	if err != nil || strings.Count(string(links.Stdout), ":") < 2 {
		t.Errorf("host-network container's interfaces: %v %q", err, links.GetStdout())
	}
}
