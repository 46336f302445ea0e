// Package e2e drives a real crivet daemon, built from this tree, with the
// real crictl (cri-tools v1.37.0) and a gRPC client, against a real
// registry and real signatures.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// e2eBridge is the CNI bridge of the end-to-end tests' nodes.
const e2eBridge = "crivete2e0"

const buildTags = "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"

var (
	crivetBin string
	crictlBin string
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	// $CRIVET_BIN: a directory with crivet, crivet-pause and crivet-monitor
	// already built from this tree, for a test binary run where there is no
	// Go toolchain (the cgroup-v2 guest of test/cgroupv2).
	if dir := os.Getenv("CRIVET_BIN"); dir != "" {
		crivetBin = filepath.Join(dir, "crivet")
		if _, err := os.Stat(crivetBin); err != nil {
			return 0, fmt.Errorf("CRIVET_BIN: %w", err)
		}
		var err error
		if crictlBin, err = findCrictl(); err != nil {
			return 0, err
		}
		return m.Run(), nil
	}
	dir, err := os.MkdirTemp("", "crivet-e2e-bin")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	crivetBin = filepath.Join(dir, "crivet")
	build := exec.Command("go", "build", "-tags", buildTags, "-o", crivetBin, "github.com/crivet/crivet/cmd/crivet")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return 0, fmt.Errorf("build crivet: %w", err)
	}
	// The static infra program sits beside crivet, where the daemon looks by default.
	pause := exec.Command("go", "build", "-o", filepath.Join(dir, "crivet-pause"), "github.com/crivet/crivet/cmd/crivet-pause")
	pause.Env = append(os.Environ(), "CGO_ENABLED=0")
	pause.Stdout, pause.Stderr = os.Stderr, os.Stderr
	if err := pause.Run(); err != nil {
		return 0, fmt.Errorf("build crivet-pause: %w", err)
	}
	mon := exec.Command("go", "build", "-o", filepath.Join(dir, "crivet-monitor"), "github.com/crivet/crivet/cmd/crivet-monitor")
	mon.Env = append(os.Environ(), "CGO_ENABLED=0")
	mon.Stdout, mon.Stderr = os.Stderr, os.Stderr
	if err := mon.Run(); err != nil {
		return 0, fmt.Errorf("build crivet-monitor: %w", err)
	}
	if crictlBin, err = findCrictl(); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// findCrictl uses $CRIVET_CRICTL, then crictl on PATH, else installs
// cri-tools v1.37.0 from the module proxy into the user cache: the test
// never silently skips for want of its client.
func findCrictl() (string, error) {
	if p := os.Getenv("CRIVET_CRICTL"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("crictl"); err == nil {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "crivet-test", "bin")
	p := filepath.Join(bin, "crictl")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	cmd := exec.Command("go", "install", "sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0")
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install crictl: %w", err)
	}
	return p, nil
}

// node is one crivet daemon with its configuration files and a registry.
type node struct {
	t         *testing.T
	dir       string
	reg       *fixtures.Registry
	sock      string
	root      string
	global    string
	nsDir     string
	regConf   string
	regD      string
	lookaside string
	cmd       *exec.Cmd
	log       *fixtures.Buffer
	exited    chan error
	// ids are the pods and containers created through mustCrictl.
	ids map[string]bool
	// extraArgs are added to the daemon's command line.
	extraArgs []string
	// env is added to the daemon's environment.
	env []string
	// toml is the daemon's crivet.toml ("" = defaults).
	toml string
}

func newNode(t *testing.T) *node {
	t.Helper()
	// Short paths: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "crivet-e2e")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{
		t: t, dir: dir, reg: fixtures.StartRegistry(t),
		sock:      filepath.Join(dir, "crivet.sock"),
		root:      filepath.Join(dir, "root"),
		global:    filepath.Join(dir, "policy.json"),
		nsDir:     filepath.Join(dir, "policies.d"),
		regConf:   filepath.Join(dir, "registries.conf"),
		regD:      filepath.Join(dir, "registries.d"),
		lookaside: filepath.Join(dir, "lookaside"),
		ids:       map[string]bool{},
	}
	fixtures.WriteRegistriesConf(t, n.regConf, n.reg)
	fixtures.WriteRegistriesD(t, n.regD, n.lookaside)
	fixtures.WriteFile(t, filepath.Join(dir, "net.d", "10-crivet-e2e.conflist"), fmt.Sprintf(`{
  "cniVersion": "1.0.0", "name": "crivet-e2e",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.198.0.0/24"}]], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]}`, e2eBridge, filepath.Join(dir, "ipam")))
	n.setGlobal(`{"default":[{"type":"insecureAcceptAnything"}]}`)
	t.Cleanup(func() {
		n.cleanupPods()
		n.stop()
		exec.Command("ip", "link", "del", e2eBridge).Run()
		os.RemoveAll(dir)
	})
	return n
}

func (n *node) args() []string {
	return append([]string{
		"--config", filepath.Join(n.dir, "none.toml"), // absent on purpose: explicit config must exist
		"--listen", n.sock, "--root", n.root, "--runroot", filepath.Join(n.dir, "run"),
		"--signature-policy", n.global, "--signature-policy-dir", n.nsDir,
		"--registries-conf", n.regConf, "--registries-d", n.regD, "--log-format", "json",
		"--cni-config-dir", filepath.Join(n.dir, "net.d"), "--cni-plugin-dir", "/usr/lib/cni,/opt/cni/bin",
	}, n.extraArgs...)
}

func (n *node) setGlobal(js string) { fixtures.WriteFile(n.t, n.global, js) }
func (n *node) setNamespace(ns, js string) {
	fixtures.WriteFile(n.t, filepath.Join(n.nsDir, ns+".json"), js)
}

// start runs crivet and waits until it serves CRI.
func (n *node) start() {
	n.t.Helper()
	// The explicit --config file must exist; an empty one means defaults.
	fixtures.WriteFile(n.t, filepath.Join(n.dir, "none.toml"), n.toml)
	n.log = &fixtures.Buffer{}
	n.cmd = exec.Command(crivetBin, n.args()...)
	n.cmd.Env = append(os.Environ(), n.env...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan error, 1)
	go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(n.cmd, n.exited)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-n.exited:
			n.cmd = nil // reaped: nothing for stop to wait for
			n.t.Fatalf("crivet exited during start-up: %v\n%s", err, n.log)
		default:
		}
		// Serving means answering a CRI call: a socket that accepts a
		// connection may still be a dead daemon's file held open.
		if n.answers() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("crivet did not serve within 30s:\n%s", n.log)
}

// waitLog waits until the daemon's output holds more than before[i]
// occurrences of each wants[i] (before nil: more than none). The output
// reaches the buffer through a pipe, later than the daemon's answers and
// in no order a test can rely on, so a test waits for every line it
// asserts, never for one line and then looks for another.
func (n *node) waitLog(d time.Duration, before []int, wants ...string) {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for {
		out := n.log.String()
		missing := ""
		for i, w := range wants {
			b := 0
			if before != nil {
				b = before[i]
			}
			if strings.Count(out, w) <= b {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("no %s in the daemon's output within %s:\n%s", missing, d, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answers reports whether the daemon answers a Version call now.
func (n *node) answers() bool {
	probe, err := net.Dial("unix", n.sock)
	if err != nil {
		return false
	}
	probe.Close()
	conn, err := grpc.NewClient("unix://"+n.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(c, &runtimeapi.VersionRequest{})
	return err == nil
}

// stop sends SIGTERM and waits; it reports the exit error.
func (n *node) stop() error {
	if n.cmd == nil {
		return nil
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-n.exited:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		err = fmt.Errorf("crivet did not stop within 20s after SIGTERM")
		<-n.exited
	}
	n.cmd = nil
	return err
}

// kill9 kills the daemon without a chance to clean up.
func (n *node) kill9() {
	_ = n.cmd.Process.Kill()
	<-n.exited
	n.cmd = nil
}

// crictl runs the real crictl against this node.
func (n *node) crictl(args ...string) (string, string, error) {
	cfg := filepath.Join(n.dir, "crictl.yaml")
	if _, err := os.Stat(cfg); err != nil {
		fixtures.WriteFile(n.t, cfg, fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", n.sock, n.sock))
	}
	cmd := exec.Command(crictlBin, append([]string{"--config", cfg}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (n *node) mustCrictl(args ...string) string {
	n.t.Helper()
	out, stderr, err := n.crictl(args...)
	if err != nil {
		n.t.Fatalf("crictl %s: %v\n%s%s\ncrivet log:\n%s", strings.Join(args, " "), err, out, stderr, n.log)
	}
	if len(args) > 0 && (args[0] == "create" || args[0] == "runp") {
		n.ids[strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])] = true
	}
	return out
}

// clients dials the node's socket as kubelet does.
func (n *node) clients() (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	n.t.Helper()
	conn, err := grpc.NewClient("unix://"+n.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}
