package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A node's pods live in cgroups their driver made: switching drivers is
// refused while any pod exists, with an error naming both drivers and the
// way out, and allowed (and recorded) once the node is drained.
func TestCgroupDriverSwitchIsRefusedWhilePodsExist(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"), CNIConfDir: filepath.Join(dir, "net.d")}
	open := func(driver string) (*Manager, error) {
		c := cfg
		c.CgroupDriver = driver
		return New(c)
	}
	recorded := func() string {
		b, _ := os.ReadFile(filepath.Join(cfg.Root, cgroupDriverFile))
		return strings.TrimSpace(string(b))
	}

	m, err := open("cgroupfs")
	if err != nil {
		t.Fatal(err)
	}
	if got := recorded(); got != "cgroupfs" {
		t.Fatalf("recorded driver %q, want cgroupfs", got)
	}
	pod := podConfig("web", 0)
	pod.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}}}
	p, err := runPod(m, context.Background(), pod, "", nil)
	if err != nil {
		t.Fatal(err)
	}

	_, err = open("systemd")
	if !errors.Is(err, ErrCgroupDriverChanged) {
		t.Fatalf("switch to systemd with a pod: err = %v, want ErrCgroupDriverChanged", err)
	}
	for _, want := range []string{`cgroup_manager is "systemd"`, `"cgroupfs" driver`, "drain", "1 pods"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := recorded(); got != "cgroupfs" {
		t.Fatalf("a refused switch changed the record to %q", got)
	}
	if m, err = open("cgroupfs"); err != nil {
		t.Fatalf("same driver again: %v", err)
	}

	if err := m.Remove(context.Background(), p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := open("systemd"); err != nil {
		t.Fatalf("switch on a drained node: %v", err)
	}
	if got := recorded(); got != "systemd" {
		t.Fatalf("recorded driver %q after the switch, want systemd", got)
	}
}

// Pod records older than the driver record were made by a crivet that
// knew only cgroupfs.
func TestPodsWithoutADriverRecordAreCgroupfs(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"), CNIConfDir: filepath.Join(dir, "net.d")}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pod := podConfig("old", 0)
	pod.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}}}
	p, err := runPod(m, context.Background(), pod, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Remove(context.Background(), p.ID) })
	if _, err := os.Stat(filepath.Join(cfg.Root, cgroupDriverFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no driver configured, yet a record: %v", err)
	}
	cfg.CgroupDriver = "systemd"
	if _, err := New(cfg); !errors.Is(err, ErrCgroupDriverChanged) {
		t.Fatalf("systemd over unrecorded pods: err = %v, want ErrCgroupDriverChanged", err)
	}
	cfg.CgroupDriver = "cgroupfs"
	if _, err := New(cfg); err != nil {
		t.Fatalf("cgroupfs over unrecorded pods: %v", err)
	}
}
