package cgroup

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// The paths kubelet's two drivers lead to, end to end: the pod's
// cgroup_parent, runc's cgroupsPath, and the directory the kernel shows.
func TestContainerPathsUnderBothDrivers(t *testing.T) {
	for _, c := range []struct {
		name       string
		driver     Driver
		parent, id string
		runc, dir  string
	}{
		{"cgroupfs kubelet pod", Cgroupfs, "/kubepods/besteffort/pod1234", "c1", "/kubepods/besteffort/pod1234/crivet-c1", "/kubepods/besteffort/pod1234/crivet-c1"},
		{"cgroupfs relative parent", Cgroupfs, "kubepods/pod1", "c1", "/kubepods/pod1/crivet-c1", "/kubepods/pod1/crivet-c1"},
		{"cgroupfs no parent", Cgroupfs, "", "c1", "/crivet/crivet-c1", "/crivet/crivet-c1"},
		{"zero driver is cgroupfs", "", "/kubepods/pod1", "c1", "/kubepods/pod1/crivet-c1", "/kubepods/pod1/crivet-c1"},
		{"systemd kubelet pod", Systemd, "kubepods-besteffort-pod1234.slice", "c1", "kubepods-besteffort-pod1234.slice:crivet:c1",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/crivet-c1.scope"},
		{"systemd guaranteed pod", Systemd, "kubepods-pod1234.slice", "c1", "kubepods-pod1234.slice:crivet:c1",
			"/kubepods.slice/kubepods-pod1234.slice/crivet-c1.scope"},
		// kubelet's systemd driver sends the slice's expanded path; kind's
		// cgroupRoot /kubelet puts every pod slice below kubelet.slice.
		{"systemd kubelet pod as a path", Systemd, "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice", "c1",
			"kubepods-besteffort-pod1234.slice:crivet:c1", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/crivet-c1.scope"},
		{"systemd kubelet cgroupRoot /kubelet", Systemd, "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod1.slice", "c1",
			"kubelet-kubepods-burstable-pod1.slice:crivet:c1", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod1.slice/crivet-c1.scope"},
		{"systemd no parent", Systemd, "", "c1", "crivet.slice:crivet:c1", "/crivet.slice/crivet-c1.scope"},
		{"systemd root slice", Systemd, "-.slice", "c1", "-.slice:crivet:c1", "/crivet-c1.scope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			runc, err := c.driver.ContainerPath(c.parent, c.id)
			if err != nil || runc != c.runc {
				t.Fatalf("ContainerPath = %q, %v; want %q", runc, err, c.runc)
			}
			dir, err := c.driver.Dir(runc)
			if err != nil || dir != c.dir {
				t.Fatalf("Dir(%q) = %q, %v; want %q", runc, dir, err, c.dir)
			}
		})
	}
}

// runc's rules for cgroupsPaths crivet did not write (another tool's, or
// a record's): an empty slice is system.slice, a name ending in .slice is
// itself the unit.
func TestDirFollowsRuncForAnySystemdPath(t *testing.T) {
	for in, want := range map[string]string{
		":runc:abc":               "/system.slice/runc-abc.scope",
		"a-b.slice:p:n":           "/a.slice/a-b.slice/p-n.scope",
		"a.slice:p:child-x.slice": "/a.slice/child-x.slice",
	} {
		if got, err := Systemd.Dir(in); err != nil || got != want {
			t.Errorf("Dir(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"/kubepods/pod1/crivet-c1", "a.slice:c1", "a--b.slice:p:n", "noslice:p:n"} {
		if got, err := Systemd.Dir(bad); err == nil {
			t.Errorf("Dir(%q) = %q, want an error", bad, got)
		}
	}
	if got, err := Cgroupfs.Dir("relative/c1"); err == nil {
		t.Errorf("cgroupfs Dir of a relative path = %q, want an error", got)
	}
}

// A parent written for the other driver is kubelet and crivet disagreeing
// about the driver: refused, naming what to change.
func TestParentOfTheOtherDriverIsRefused(t *testing.T) {
	for _, c := range []struct {
		driver Driver
		parent string
		want   string
	}{
		{Systemd, "/kubepods/besteffort/pod1", "cgroupfs path"},
		{Systemd, "kubepods", "cgroupfs path"},
		{Systemd, "kubepods--x.slice", "invalid slice"},
		{Cgroupfs, "kubepods-besteffort-pod1.slice", "systemd slice"},
		{Cgroupfs, "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice", "systemd slice"},
		{Systemd, "/other.slice/kubepods-pod1.slice", "not the path of slice"},
	} {
		_, err := c.driver.ContainerPath(c.parent, "c1")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "cgroup") {
			t.Errorf("%s ContainerPath(%q): %v, want an error saying %q", c.driver, c.parent, err, c.want)
		}
		if _, err := c.driver.PodDir(c.parent); err == nil {
			t.Errorf("%s PodDir(%q): no error", c.driver, c.parent)
		}
	}
}

func TestPodDir(t *testing.T) {
	for _, c := range []struct {
		driver      Driver
		parent, dir string
	}{
		{Cgroupfs, "/kubepods/burstable/pod1", "/kubepods/burstable/pod1"},
		{Cgroupfs, "", ""},
		{Systemd, "kubepods-burstable-pod1.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"},
		{Systemd, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"},
		{Systemd, "", ""},
	} {
		if got, err := c.driver.PodDir(c.parent); err != nil || got != c.dir {
			t.Errorf("%s PodDir(%q) = %q, %v; want %q", c.driver, c.parent, got, err, c.dir)
		}
	}
}

// The same directory below each v1 controller's mount, or below the one
// v2 mount: the unified branch cannot be reached on a v1 host, so both are
// driven here with the mount lookup given.
func TestControllerDirOnV1AndV2(t *testing.T) {
	mounts := func(c string) (string, error) {
		if c == "memory" {
			return "/sys/fs/cgroup/memory", nil
		}
		return "", errors.New("not mounted")
	}
	dir := "/kubepods.slice/kubepods-pod1.slice/crivet-c1.scope"
	if got := controllerDir(dir, "memory", false, mounts); got != "/sys/fs/cgroup/memory"+dir {
		t.Errorf("v1 memory: %q", got)
	}
	if got := controllerDir(dir, "hugetlb", false, mounts); got != "" {
		t.Errorf("v1 unmounted controller: %q, want \"\"", got)
	}
	if got := controllerDir(dir, "memory", true, mounts); got != "/sys/fs/cgroup"+dir {
		t.Errorf("v2 memory: %q", got)
	}
}

// On this host: the real lookup finds the memory controller where the
// kernel shows this process's own memory cgroup.
func TestControllerDirFindsThisHostsMemoryCgroup(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var own string
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (parts[1] == "memory" || strings.Contains(","+parts[1]+",", ",memory,")) {
			own = parts[2]
		}
	}
	if own == "" {
		own = strings.TrimPrefix(strings.TrimSpace(string(b)), "0::") // v2: one line
	}
	d := ControllerDir(own, "memory")
	if _, err := os.Stat(d + "/memory.max"); err != nil {
		if _, err := os.Stat(d + "/memory.limit_in_bytes"); err != nil {
			t.Fatalf("ControllerDir(%q, memory) = %q holds no memory limit file", own, d)
		}
	}
}

func TestDefaultAndParseDriver(t *testing.T) {
	_, err := os.Stat("/run/systemd/system")
	want := Cgroupfs
	if err == nil {
		want = Systemd
	}
	if got := Default(); got != want {
		t.Errorf("Default() = %q, want %q (/run/systemd/system: %v)", got, want, err)
	}
	if got, err := ParseDriver(""); err != nil || got != want {
		t.Errorf(`ParseDriver("") = %q, %v`, got, err)
	}
	for _, s := range []string{"systemd", "cgroupfs"} {
		if got, err := ParseDriver(s); err != nil || string(got) != s {
			t.Errorf("ParseDriver(%q) = %q, %v", s, got, err)
		}
	}
	if _, err := ParseDriver("Systemd"); err == nil {
		t.Error(`ParseDriver("Systemd"): no error`)
	}
}
