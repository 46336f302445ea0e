package image

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/policy"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// A daemon killed while the overlay driver probed the kernel leaves the
// probe's overlay mounted under the store; the next start removes it (the
// kill -9 suite found one).
func TestStartRemovesAnInterruptedDriverProbeMount(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	probe := filepath.Join(root, "storage", "overlay", "volatile-check123456")
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(probe, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	merged := filepath.Join(probe, "merged")
	opts := "lowerdir=" + filepath.Join(probe, "lower") + ",upperdir=" + filepath.Join(probe, "upper") + ",workdir=" + filepath.Join(probe, "work")
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Skipf("cannot mount overlay here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(merged, unix.MNT_DETACH) })
	svc, err := Open(Config{
		Root: root, RunRoot: filepath.Join(dir, "run"),
		RegistriesConf: filepath.Join(dir, "absent.conf"), RegistriesD: filepath.Join(dir, "absent.d"),
		Policies: policy.NewStore(filepath.Join(dir, "policy.json"), ""), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	mounted, err := mountinfo.Mounted(merged)
	if err == nil && mounted {
		t.Fatalf("%s is still mounted", merged)
	}
	if _, err := os.Stat(probe); !os.IsNotExist(err) {
		t.Fatalf("%s is still there: %v", probe, err)
	}
	mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
	for _, m := range mounts {
		if strings.Contains(m.Mountpoint, "check") {
			t.Fatalf("probe mount left: %s", m.Mountpoint)
		}
	}
}
