package lifecycle

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/oci/spec"
)

// A run root below a directory others cannot search is refused with a
// message naming that directory, instead of runc's bare EACCES from
// inside the pod's user namespace.
func TestReachableRunRootNamesTheClosedDirectory(t *testing.T) {
	top := t.TempDir()
	closed := filepath.Join(top, "closed")
	runRoot := filepath.Join(closed, "run")
	if err := os.MkdirAll(runRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	// t.TempDir is below a 0700 directory of its own.
	for _, d := range []string{filepath.Dir(top), top} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	err := reachableRunRoot(runRoot)
	if !errors.Is(err, spec.ErrUnsupported) || !strings.Contains(err.Error(), closed+" ") {
		t.Fatalf("err = %v, want ErrUnsupported naming %s", err, closed)
	}
	if err := os.Chmod(closed, 0o711); err != nil {
		t.Fatal(err)
	}
	// The run root itself may be closed: crivet opens it.
	if err := reachableRunRoot(runRoot); err != nil {
		t.Fatal(err)
	}
	if err := searchable(runRoot); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(runRoot); st.Mode().Perm() != 0o711 {
		t.Errorf("run root mode %#o, want 0711", st.Mode().Perm())
	}
}
