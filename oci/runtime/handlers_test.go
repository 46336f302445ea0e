package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"
)

// Debian 12's runc and the one `make runc` builds (bin/runc): the two
// versions nodes run today, on either side of id-mapped mounts (1.2).
const debianRunc = "/usr/bin/runc"

func builtRunc(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../bin/runc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no %s (make runc builds it): %v", p, err)
	}
	return p
}

func debian(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(debianRunc); err != nil {
		t.Skipf("no %s (Debian's runc package): %v", debianRunc, err)
	}
	return debianRunc
}

// Detection asks the real binaries. On this kernel (mount_setattr, >= 6.3)
// both runc versions make recursive read-only mounts; only runc >= 1.2
// makes the id-mapped mounts user namespaces need.
func TestDetectFeaturesOfDebiansRunc115AndOfRunc15(t *testing.T) {
	k := CurrentKernel()
	if !k.MountSetattr || !k.atLeast(6, 3) {
		t.Skipf("kernel %s: the expectations below are for a kernel >= 6.3", k.Release)
	}
	for _, c := range []struct {
		bin            func(*testing.T) string
		versionPrefix  string
		rro, idmapped  bool
		missingMention string
	}{
		{debian, "1.1.", true, false, "idmapped_mounts: runc does not make id-mapped mounts"},
		{builtRunc, "1.5.", true, true, ""},
	} {
		bin := c.bin(t)
		t.Run("runc-"+c.versionPrefix+"x", func(t *testing.T) {
			v, f, err := DetectFeatures(t.Context(), bin, k)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(v, c.versionPrefix) {
				t.Errorf("version %q, want %s*", v, c.versionPrefix)
			}
			if f.RecursiveReadOnlyMounts != c.rro || f.IDMappedMounts != c.idmapped {
				t.Errorf("features %+v, want rro=%v idmapped=%v", f, c.rro, c.idmapped)
			}
			if c.missingMention != "" && !strings.Contains(strings.Join(f.Missing, "\n"), c.missingMention) {
				t.Errorf("missing %q does not say %q", f.Missing, c.missingMention)
			}
			if c.missingMention == "" && len(f.Missing) > 0 {
				t.Errorf("nothing should be missing: %q", f.Missing)
			}
		})
	}
}

// What the kernel lacks turns a runc feature off, with the reason.
func TestFeaturesNeedTheKernelToo(t *testing.T) {
	yes := true
	full := &features.Features{
		MountOptions: []string{"ro", "rro", "rbind"},
		Linux:        &features.Linux{MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &yes}}},
	}
	for _, c := range []struct {
		name          string
		rf            *features.Features
		k             Kernel
		rro, idmapped bool
		why           string
	}{
		{"current kernel", full, Kernel{Release: "6.18.44-fc", MountSetattr: true}, true, true, ""},
		{"6.3 exactly", full, Kernel{Release: "6.3.0", MountSetattr: true}, true, true, ""},
		{"kernel 6.1: no id-mapped tmpfs", full, Kernel{Release: "6.1.0-18-amd64", MountSetattr: true}, true, false, "Linux 6.3"},
		{"kernel 5.10: no mount_setattr", full, Kernel{Release: "5.10.0-28-amd64"}, false, false, "mount_setattr"},
		{"unreadable release", full, Kernel{Release: "weird", MountSetattr: true}, true, false, "Linux 6.3"},
		{"runc without rro", &features.Features{MountOptions: []string{"ro"}}, Kernel{Release: "6.18", MountSetattr: true}, false, false, "rro mount option"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := combine(c.rf, c.k)
			if f.RecursiveReadOnlyMounts != c.rro || f.IDMappedMounts != c.idmapped {
				t.Fatalf("%+v, want rro=%v idmapped=%v", f, c.rro, c.idmapped)
			}
			if c.why != "" && !strings.Contains(strings.Join(f.Missing, "\n"), c.why) {
				t.Fatalf("missing %q does not say %q", f.Missing, c.why)
			}
		})
	}
}

func TestRuncVersionParsing(t *testing.T) {
	for in, want := range map[string]string{
		"runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\n": "1.1.5+ds1",
		"runc version 1.5.3\nspec: 1.3.0\n":                                      "1.5.3",
	} {
		if got := runcVersion([]byte(in)); got != want {
			t.Errorf("runcVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// A container created on a named handler is run by that handler's runc,
// on its root, for its whole life: start, exec, status, stop, removal,
// also by a new Runtime (a restarted daemon) that finds it only on disk.
func TestHandlerRunsItsContainersWithItsRuncOnItsRoot(t *testing.T) {
	newer := builtRunc(t)
	e := newEnv(t)
	handlerRoot := filepath.Join(filepath.Dir(e.root), "runc-test-handler")
	cfg := Config{
		Runc: debian(t), Root: e.root, StateDir: e.state, MonitorCmd: []string{testBinary, "monitor"},
		Handlers: []Handler{{Name: "test-handler", Runc: newer, Root: handlerRoot}},
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := a.Handlers()
	if len(hs) != 2 || hs[0].Name != DefaultHandler || hs[1].Name != "test-handler" || hs[1].Runc != newer || hs[1].Root != handlerRoot {
		t.Fatalf("handlers %+v", hs)
	}
	if !strings.HasPrefix(hs[0].Version, "1.1.") || !strings.HasPrefix(hs[1].Version, "1.5.") {
		t.Fatalf("versions %q and %q, want 1.1.x and 1.5.x", hs[0].Version, hs[1].Version)
	}

	c := run(t, a, e, []string{"sh", "-c", "echo on-handler; sleep 100"}, CreateOptions{Handler: "test-handler"}, bundleOpts{})
	if _, err := os.Stat(filepath.Join(handlerRoot, c.id, "state.json")); err != nil {
		t.Fatalf("no runc state under the handler's root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.root, c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("runc state under the default root too: %v", err)
	}
	// runc 1.1.5 cannot read the state 1.5.3 wrote there, and the
	// default root has none: only the handler's runc is ever asked.
	if out, _, code, err := a.ExecSync(t.Context(), c.id, []string{"echo", "exec-ok"}, 5*time.Second); err != nil || code != 0 || string(out) != "exec-ok\n" {
		t.Fatalf("ExecSync: %q %d %v", out, code, err)
	}

	b, err := New(cfg) // a restarted daemon: nothing in memory
	if err != nil {
		t.Fatal(err)
	}
	ids, err := b.List()
	if err != nil || !contains(ids, c.id) {
		t.Fatalf("List after restart: %v %v, want %s", ids, err, c.id)
	}
	st, err := b.Status(t.Context(), c.id)
	if err != nil || st.State != StateRunning {
		t.Fatalf("Status after restart: %+v %v", st, err)
	}
	if pids, err := b.Pids(t.Context(), c.id); err != nil || !contains(pids, st.Pid) {
		t.Fatalf("Pids (runc ps) after restart: %v %v", pids, err)
	}
	if err := b.Stop(t.Context(), c.id, syscall.SIGKILL, 5*time.Second); err != nil {
		t.Fatalf("Stop after restart: %v", err)
	}
	if err := b.Delete(t.Context(), c.id); err != nil {
		t.Fatalf("Delete after restart: %v", err)
	}
	if _, err := os.Stat(filepath.Join(handlerRoot, c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("runc state left under the handler's root: %v", err)
	}
}

// Recovery after a crash between runc create and the monitor's record:
// runc state on a handler's root with no monitor directory is still found
// and removed by that handler's runc.
func TestListAndDeleteFindRuncStateOnAHandlersRoot(t *testing.T) {
	newer := builtRunc(t)
	e := newEnv(t)
	handlerRoot := filepath.Join(filepath.Dir(e.root), "runc-other")
	rt, err := New(Config{Runc: debian(t), Root: e.root, StateDir: e.state, MonitorCmd: []string{testBinary, "monitor"},
		Handlers: []Handler{{Name: "other", Runc: newer, Root: handlerRoot}}})
	if err != nil {
		t.Fatal(err)
	}
	c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{Handler: "other"}, bundleOpts{})
	// Lose the monitor's directory as a crash can (the monitor is killed
	// first, as recovery finds it gone).
	cfgDir := filepath.Join(e.state, c.id)
	if err := rt.Kill(t.Context(), c.id, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	fresh, err := New(Config{Runc: debian(t), Root: e.root, StateDir: e.state, MonitorCmd: []string{testBinary, "monitor"},
		Handlers: []Handler{{Name: "other", Runc: newer, Root: handlerRoot}}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the monitor to end", func() bool {
		st, err := fresh.Status(t.Context(), c.id)
		return err == nil && st.State == StateExited
	})
	if err := os.RemoveAll(cfgDir); err != nil {
		t.Fatal(err)
	}
	ids, err := fresh.List()
	if err != nil || !contains(ids, c.id) {
		t.Fatalf("List: %v %v, want %s from the handler's root", ids, err, c.id)
	}
	if err := fresh.Delete(t.Context(), c.id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(handlerRoot, c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("runc state left: %v", err)
	}
}

func TestUnknownHandlerIsRefusedNamingTheConfiguredOnes(t *testing.T) {
	e := newEnv(t)
	rt, err := New(Config{Root: e.root, StateDir: e.state, MonitorCmd: []string{testBinary, "monitor"},
		Handlers: []Handler{{Name: "test-handler", Root: filepath.Join(filepath.Dir(e.root), "runc-th")}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", DefaultHandler, "test-handler"} {
		if _, err := rt.Handler(name); err != nil {
			t.Errorf("Handler(%q): %v", name, err)
		}
	}
	_, err = rt.Handler("kata")
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), `"kata"`) || !strings.Contains(err.Error(), `"runc", "test-handler"`) {
		t.Fatalf("Handler(kata) = %v", err)
	}
	err = rt.Create(context.Background(), CreateOptions{ID: "x-unknown", Bundle: "/nonexistent", Handler: "kata"})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Create on an unknown handler: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.state, "x-unknown")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Create on an unknown handler left state: %v", err)
	}
}

func TestHandlersMustNotShareARoot(t *testing.T) {
	e := newEnv(t)
	_, err := New(Config{Root: e.root, StateDir: e.state,
		Handlers: []Handler{{Name: "a", Root: e.root}}})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "share the runc root") {
		t.Fatalf("New with a shared root: %v", err)
	}
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Detection is kept, not rerun per read; DetectFeatures (SIGHUP) sees a
// runc replaced in place.
func TestDetectFeaturesAgainSeesARuncReplacedInPlace(t *testing.T) {
	newer, old := builtRunc(t), debian(t)
	e := newEnv(t)
	link := filepath.Join(t.TempDir(), "runc")
	if err := os.Symlink(old, link); err != nil {
		t.Fatal(err)
	}
	rt, err := New(Config{Runc: link, Root: e.root, StateDir: e.state})
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := rt.Handler(""); !strings.HasPrefix(h.Version, "1.1.") || h.Features.IDMappedMounts {
		t.Fatalf("before: %+v", h)
	}
	tmp := link + ".new"
	if err := os.Symlink(newer, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	if h, _ := rt.Handler(""); !strings.HasPrefix(h.Version, "1.1.") {
		t.Fatalf("detection ran again on a read: %+v", h)
	}
	rt.DetectFeatures(t.Context())
	if h, _ := rt.Handler(""); !strings.HasPrefix(h.Version, "1.5.") || !h.Features.IDMappedMounts {
		t.Fatalf("after DetectFeatures: %+v", h)
	}
}

// What is advertised works: with each runc that detection says makes
// recursive read-only mounts, a bind mount with "rro" is read-only down
// to a tmpfs mounted beneath it, where plain "ro" leaves that tmpfs
// writable (which is what makes the test mean something).
func TestRecursiveReadOnlyMountsWorkWhereDetected(t *testing.T) {
	for _, bin := range []func(*testing.T) string{debian, builtRunc} {
		runcBin := bin(t)
		v, f, err := DetectFeatures(t.Context(), runcBin, CurrentKernel())
		if err != nil {
			t.Fatal(err)
		}
		if !f.RecursiveReadOnlyMounts {
			t.Logf("runc %s: no recursive read-only mounts here (%q)", v, f.Missing)
			continue
		}
		t.Run("runc-"+v, func(t *testing.T) {
			host := t.TempDir()
			sub := filepath.Join(host, "sub")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
			e := newEnv(t)
			rt, err := New(Config{Runc: runcBin, Root: e.root, StateDir: e.state, MonitorCmd: []string{testBinary, "monitor"}})
			if err != nil {
				t.Fatal(err)
			}
			c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{mounts: []specs.Mount{
				{Destination: "/rro", Type: "bind", Source: host, Options: []string{"rbind", "rprivate", "rro"}},
				{Destination: "/ro", Type: "bind", Source: host, Options: []string{"rbind", "rprivate", "ro"}},
			}})
			_, stderr, code, err := rt.ExecSync(t.Context(), c.id, []string{"touch", "/rro/sub/f"}, 10*time.Second)
			if err != nil || code == 0 || !strings.Contains(string(stderr), "Read-only file system") {
				t.Fatalf("touch beneath the rro mount: exit %d, %q, %v; want Read-only file system", code, stderr, err)
			}
			if _, stderr, code, err := rt.ExecSync(t.Context(), c.id, []string{"touch", "/ro/sub/g"}, 10*time.Second); err != nil || code != 0 {
				t.Fatalf("touch beneath the plain ro mount: exit %d, %q, %v; want it writable", code, stderr, err)
			}
		})
	}
}
