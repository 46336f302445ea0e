package image

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A root filesystem for a pod user namespace shows the image's files
// owned by the mapped IDs, with no copy of the image (overlay over
// id-mapped lower layers), and is bound under <runroot>/rootfs where the
// pod's root can reach it; its removal leaves no mount and no directory,
// and a second removal is a no-op.
func TestIDMappedRootfs(t *testing.T) {
	e := newEnv(t)
	img := e.mustPull(fixtures.PushBusybox(t, e.ref("busybox:1"), fixtures.BusyboxConfig{}).Ref, "")
	layersBefore, err := e.svc.store.Layers()
	if err != nil {
		t.Fatal(err)
	}
	idmap := &IDMapping{UIDs: []specs.LinuxIDMapping{{HostID: 300000, Size: 65536}}, GIDs: []specs.LinuxIDMapping{{HostID: 400000, Size: 65536}}}
	path, err := e.svc.CreateRootfs("userns-c", img, idmap)
	if err != nil {
		t.Fatal(err)
	}
	runRoot := filepath.Join(e.dir, "run")
	if want := filepath.Join(runRoot, "rootfs", "userns-c"); path != want {
		t.Errorf("rootfs at %s, want %s", path, want)
	}
	for _, p := range []string{path, filepath.Join(path, "bin", "busybox")} {
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if s := st.Sys().(*syscall.Stat_t); s.Uid != 300000 || s.Gid != 400000 {
			t.Errorf("%s owned by %d:%d on the host, want 300000:400000", p, s.Uid, s.Gid)
		}
	}
	if st, _ := os.Stat(runRoot); st.Mode().Perm()&0o011 != 0o011 {
		t.Errorf("run root mode %#o: others cannot search it", st.Mode().Perm())
	}
	layersAfter, _ := e.svc.store.Layers()
	if len(layersAfter) != len(layersBefore)+1 {
		t.Errorf("layers %d -> %d: want only the container's own layer, no mapped copy of the image", len(layersBefore), len(layersAfter))
	}
	for range 2 {
		if err := e.svc.RemoveRootfs("userns-c"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("rootfs directory left: %v", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), path) {
		t.Errorf("mount left at %s", path)
	}
}
