package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/crivet/crivet/oci/spec"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

// The user namespace holder is this test binary re-executed.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// inode of a namespace file.
func nsIno(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// A pod's user namespace is pinned with the pod's mappings, and the
// network, IPC and UTS namespaces made with it belong to it (the kernel
// says so: NS_GET_USERNS); lo is up and the hostname set inside; the pins
// go with the pod directory.
func TestPinUsernsOwnsThePodsNamespaces(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ns")
	m := &spec.IDMappings{UIDs: []specs.LinuxIDMapping{{HostID: 300000, Size: 65536}}, GIDs: []specs.LinuxIDMapping{{HostID: 400000, Size: 1000}}}
	pins, err := pinUserns(dir, []string{NetNS, UTSNS, IPCNS}, "userns-pod", m)
	if err != nil {
		t.Fatal(err)
	}
	defer unpinAll(dir)
	for _, k := range []string{UserNS, NetNS, UTSNS, IPCNS} {
		if !isNamespace(pins[k]) {
			t.Fatalf("%s pin %q is not a namespace", k, pins[k])
		}
	}
	user, err := unix.Open(pins[UserNS], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(user)
	for _, k := range []string{NetNS, UTSNS, IPCNS} {
		fd, err := unix.Open(pins[k], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		owner, err := unix.IoctlRetInt(fd, unix.NS_GET_USERNS)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		if nsIno(t, owner) != nsIno(t, user) {
			t.Errorf("%s namespace is not owned by the pod's user namespace", k)
		}
		unix.Close(owner)
	}

	// Inside, from a thread that joins the namespaces and is then thrown
	// away (it stays locked): the hostname and lo.
	type inside struct {
		hostname string
		loFlags  uint16
		err      error
	}
	ch := make(chan inside, 1)
	go func() {
		runtime.LockOSThread()
		var r inside
		defer func() { ch <- r }()
		for _, k := range []string{UTSNS, NetNS} {
			fd, err := unix.Open(pins[k], unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				r.err = err
				return
			}
			err = unix.Setns(fd, 0)
			unix.Close(fd)
			if err != nil {
				r.err = err
				return
			}
		}
		var u unix.Utsname
		_ = unix.Uname(&u)
		r.hostname = unix.ByteSliceToString(u.Nodename[:])
		sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			r.err = err
			return
		}
		defer unix.Close(sock)
		ifr, _ := unix.NewIfreq("lo")
		r.err = unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr)
		r.loFlags = ifr.Uint16()
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.hostname != "userns-pod" || r.loFlags&unix.IFF_UP == 0 {
		t.Errorf("in the pod's namespaces: hostname %q, lo flags %#x", r.hostname, r.loFlags)
	}
	// The mappings, as a process of the namespace sees them.
	for file, want := range map[string]string{"uid_map": "0 300000 65536", "gid_map": "0 400000 1000"} {
		out, err := exec.Command("nsenter", "--user="+pins[UserNS], "cat", "/proc/self/"+file).CombinedOutput()
		if got := strings.Join(strings.Fields(string(out)), " "); err != nil || got != want {
			t.Errorf("%s in the pod's user namespace: %q %v, want %q", file, out, err, want)
		}
	}
	// Supplementary groups stay settable there (runc sets a container's).
	if out, err := exec.Command("nsenter", "--user="+pins[UserNS], "cat", "/proc/self/setgroups").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "allow" {
		t.Errorf("setgroups in the pod's user namespace: %q %v", out, err)
	}

	if err := unpinAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pins left: %v", err)
	}
}
