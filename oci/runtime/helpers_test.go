package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/monitor"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// These tests drive real runc with a busybox root filesystem. The test
// binary doubles as the monitor (`<test binary> monitor <dir>`, like
// `crivet monitor`) and as the "daemon" subprocess that is killed in the
// survival test.

var (
	rootfs       string // shared, read-only busybox root filesystem
	cgroupParent = fmt.Sprintf("crivet-test-%d", os.Getpid())
	testBinary   string
)

const launcherEnv = "CRIVET_RUNTIME_TEST_LAUNCHER"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "monitor" {
		os.Exit(monitor.Main(os.Args[2:]))
	}
	if os.Getenv(launcherEnv) != "" {
		os.Exit(launcherMain())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("skipping oci/runtime tests: they need root")
		return 0
	}
	if _, err := exec.LookPath("runc"); err != nil {
		fmt.Println("skipping oci/runtime tests: no runc")
		return 0
	}
	var err error
	if testBinary, err = os.Executable(); err != nil {
		fmt.Println(err)
		return 1
	}
	// Monitors whose launcher was killed are re-parented to us rather than
	// to pid 1, so the test can reap them.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	tmp, err := os.MkdirTemp("", "crivet-rootfs-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if rootfs, err = makeBusyboxRootfs(tmp); err != nil {
		fmt.Println("busybox rootfs:", err)
		return 1
	}
	defer removeCgroupParent()
	return m.Run()
}

// makeBusyboxRootfs builds a root filesystem from Debian's busybox-static:
// the binary plus a symlink per applet.
func makeBusyboxRootfs(tmp string) (string, error) {
	bb := "/bin/busybox"
	if out, err := exec.Command("file", "-L", bb).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		return "", fmt.Errorf("%s is not static: apt-get install -y busybox-static", bb)
	}
	root := filepath.Join(tmp, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Link(bb, filepath.Join(root, "bin", "busybox")); err != nil {
		b, err := os.ReadFile(bb)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
			return "", err
		}
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return "", err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			os.Symlink("busybox", filepath.Join(root, "bin", applet))
		}
	}
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\ntty:x:5:\n"), 0o644)
	return root, nil
}

func removeCgroupParent() {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupParent)
	for _, d := range dirs {
		os.Remove(d)
	}
}

// cgroupDirs lists the container's cgroup directories that exist.
func cgroupDirs(id string) []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupParent + "/" + id)
	return dirs
}

type env struct {
	root, state, logs string
}

func newEnv(t *testing.T) env {
	base := t.TempDir()
	e := env{filepath.Join(base, "runc"), filepath.Join(base, "containers"), filepath.Join(base, "logs")}
	return e
}

func (e env) runtime(t *testing.T) *Runtime {
	t.Helper()
	rt, err := New(Config{Root: e.root, StateDir: e.state, MonitorCmd: []string{testBinary, "monitor"}})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

type bundleOpts struct {
	tty         bool
	memoryLimit int64
	mounts      []specs.Mount // after the standard ones
}

// writeBundle writes a bundle for args, in the shape `runc spec` makes.
func writeBundle(t *testing.T, id string, args []string, o bundleOpts) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	spec := specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: "crivet-test",
		Process: &specs.Process{
			Terminal:        o.tty,
			Args:            args,
			Env:             []string{"PATH=/bin", "HOME=/root"},
			Cwd:             "/",
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + cgroupParent + "/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	spec.Mounts = append(spec.Mounts, o.mounts...)
	if o.memoryLimit > 0 {
		spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &o.memoryLimit}}
	}
	b, err := json.MarshalIndent(spec, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

var idSeq int

func newID(t *testing.T) string {
	idSeq++
	name := regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-")
	return fmt.Sprintf("%s-%d-%d", strings.ToLower(name[min(len(name), 4):min(len(name), 36)]), os.Getpid(), idSeq)
}

type container struct {
	id, log string
}

// create creates a container and deletes it when the test ends.
func create(t *testing.T, rt *Runtime, e env, args []string, o CreateOptions, b bundleOpts) container {
	t.Helper()
	id := newID(t)
	c := container{id: id, log: filepath.Join(e.logs, id+".log")}
	o.ID = c.id
	o.Bundle = writeBundle(t, c.id, args, b)
	o.LogPath = c.log
	o.Tty = b.tty
	if err := rt.Create(t.Context(), o); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Delete(context.Background(), c.id); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
	return c
}

func run(t *testing.T, rt *Runtime, e env, args []string, o CreateOptions, b bundleOpts) container {
	t.Helper()
	c := create(t, rt, e, args, o, b)
	if err := rt.Start(t.Context(), c.id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitExited(t *testing.T, rt *Runtime, id string) Status {
	t.Helper()
	var st Status
	eventually(t, 10*time.Second, "the container to exit", func() bool {
		var err error
		st, err = rt.Status(t.Context(), id)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		return st.State == StateExited
	})
	return st
}

type logRecord struct {
	time                 time.Time
	stream, tag, content string
}

var logLine = regexp.MustCompile(`^(\S+) (stdout|stderr) ([PF]) (.*)$`)

func readLog(t *testing.T, path string) []logRecord {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []logRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := logLine.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("%s: not a CRI log record: %q", path, sc.Text())
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("%s: timestamp %q: %v", path, m[1], err)
		}
		recs = append(recs, logRecord{ts, m[2], m[3], m[4]})
	}
	return recs
}

func logText(t *testing.T, path string) string {
	var b strings.Builder
	for _, r := range readLog(t, path) {
		b.WriteString(r.content)
		if r.tag == "F" {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if unix.Kill(pid, 0) != nil {
		return false
	}
	// A zombie still answers kill(0) but is no longer running.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}
