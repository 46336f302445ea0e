package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	cni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/pkg/invoke"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// network attaches pods to the node's CNI network, as described by the
// first configuration in the CNI config directory (the kubelet convention).
type network struct {
	confDir    string
	pluginDirs []string

	mu  sync.Mutex
	cni cni.CNI
	// confs identifies the configuration files cni was loaded from: a
	// network add-on rewriting or removing them is seen at the next use.
	confs string
}

func newNetwork(confDir string, pluginDirs []string) *network {
	return &network{confDir: confDir, pluginDirs: pluginDirs}
}

// load (re)reads the configuration whenever its files change: a node's
// CNI config is often written after the runtime starts (by a network
// add-on), and may be replaced or removed while it runs.
func (n *network) load() (cni.CNI, error) {
	confs, err := confFiles(n.confDir)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cni != nil && confs == n.confs {
		if err := n.cni.Status(); err == nil {
			return n.cni, nil
		}
	}
	n.cni, n.confs = nil, ""
	c, err := cni.New(cni.WithMinNetworkCount(1), cni.WithPluginConfDir(n.confDir), cni.WithPluginDir(n.pluginDirs), cni.WithInterfacePrefix("eth"))
	if err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	// No CNI loopback network: the pod's lo is brought up when its
	// network namespace is created (pinNamespaces).
	if err := c.Load(cni.WithDefaultConf); err != nil {
		return nil, fmt.Errorf("cni: no loadable network configuration in %s: %w", n.confDir, err)
	}
	n.cni, n.confs = c, confs
	return c, nil
}

// confFiles names the configuration files libcni would consider, with
// their size and mtime: a change of any of them means a reload.
func confFiles(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("cni config dir: %w", err)
	}
	var b strings.Builder
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
		default:
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		fmt.Fprintf(&b, "%s/%d/%d;", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("cni: no network configuration in %s", dir)
	}
	return b.String(), nil
}

// Ready reports whether pods can be attached: a configuration loads and
// every plugin it names is installed. Checked at each call (kubelet's
// Status), so removing the config or a plugin turns the node NotReady.
func (n *network) Ready() error {
	c, err := n.load()
	if err != nil {
		return err
	}
	for _, net := range c.GetConfig().Networks {
		if net.Config == nil {
			continue
		}
		for _, p := range net.Config.Plugins {
			if p.Network == nil {
				continue
			}
			if _, err := invoke.FindInPath(p.Network.Type, n.pluginDirs); err != nil {
				return fmt.Errorf("cni: network %s: plugin %q: %w", net.Config.Name, p.Network.Type, err)
			}
		}
	}
	return nil
}

func podLabels(id string, md *runtimeapi.PodSandboxMetadata) map[string]string {
	return map[string]string{
		"K8S_POD_NAMESPACE":          md.GetNamespace(),
		"K8S_POD_NAME":               md.GetName(),
		"K8S_POD_INFRA_CONTAINER_ID": id,
		"K8S_POD_UID":                md.GetUid(),
		"IgnoreUnknown":              "1",
	}
}

func portMappings(cfg *runtimeapi.PodSandboxConfig) []cni.PortMapping {
	var out []cni.PortMapping
	for _, p := range cfg.GetPortMappings() {
		if p.HostPort <= 0 {
			continue // not published on the node
		}
		out = append(out, cni.PortMapping{
			HostPort: p.HostPort, ContainerPort: p.ContainerPort,
			Protocol: strings.ToLower(p.Protocol.String()), HostIP: p.HostIp,
		})
	}
	return out
}

// Attach runs the CNI ADD of every network for the pod and returns the
// pod's IPs, the first being its primary IP.
func (n *network) Attach(ctx context.Context, id, netns string, cfg *runtimeapi.PodSandboxConfig) ([]string, error) {
	c, err := n.load()
	if err != nil {
		return nil, err
	}
	opts := []cni.NamespaceOpts{cni.WithLabels(podLabels(id, cfg.GetMetadata())), cni.WithCapabilityPortMap(portMappings(cfg))}
	if cg := cfg.GetLinux().GetCgroupParent(); cg != "" {
		opts = append(opts, cni.WithCapabilityCgroupPath(cg))
	}
	res, err := c.Setup(ctx, id, netns, opts...)
	if err != nil {
		return nil, fmt.Errorf("cni add: %w", err)
	}
	var ips []string
	for name, iface := range res.Interfaces {
		if name == "lo" {
			continue
		}
		for _, ipc := range iface.IPConfigs {
			if ipc.IP.To4() != nil {
				ips = append([]string{ipc.IP.String()}, ips...) // IPv4 first, as kubelet expects
			} else {
				ips = append(ips, ipc.IP.String())
			}
		}
	}
	return ips, nil
}

// Detach runs the CNI DEL; it is safe to repeat and to call for a
// namespace that is already gone.
func (n *network) Detach(ctx context.Context, id, netns string, cfg *runtimeapi.PodSandboxConfig, afterCrash bool) error {
	c, err := n.load()
	if err != nil {
		return err
	}
	// A pin that is gone (or a file a crash left before the bind mount)
	// has no interfaces left to delete, but the IPAM lease and port
	// mappings of the pod are still held: a DEL without a namespace,
	// which CNI allows for this cleanup, releases them.
	if !isNamespace(netns) {
		netns = ""
	}
	// A daemon killed during an ADD leaves its plugins running; a DEL
	// overtaking one would let it allocate after the release.
	if afterCrash {
		waitPlugins(id, pluginWait)
	}
	err = c.Remove(ctx, id, netns, cni.WithLabels(podLabels(id, cfg.GetMetadata())), cni.WithCapabilityPortMap(portMappings(cfg)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cni del: %w", err)
	}
	return nil
}

// pluginWait bounds waitPlugins: a CNI plugin that takes longer is hung.
const pluginWait = 10 * time.Second

// waitPlugins waits while a CNI plugin process runs for the pod id (its
// environment carries CNI_CONTAINERID=id); only a crashed daemon leaves
// such a process behind, so normally this is one scan of /proc.
func waitPlugins(id string, d time.Duration) {
	want := []byte("CNI_CONTAINERID=" + id + "\x00")
	deadline := time.Now().Add(d)
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		if !pluginRunning(want) || time.Now().After(deadline) {
			return
		}
		time.Sleep(delay)
	}
}

func pluginRunning(want []byte) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err == nil && bytes.Contains(env, want) {
			return true
		}
	}
	return false
}
