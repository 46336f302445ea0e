package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/crivet/crivet/oci/spec"
)

func TestContainerLogPathStaysInsideTheLogDirectory(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "pod")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{dir, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "target.log"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "target.log"), filepath.Join(dir, "link.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "d", "inner")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rel  string
		want string // "" = refused
	}{
		{"c/0.log", filepath.Join(dir, "c", "0.log")},
		{"0.log", filepath.Join(dir, "0.log")},
		{"./c//1.log", filepath.Join(dir, "c", "1.log")},
		{"c/../2.log", filepath.Join(dir, "2.log")},
		{"../../etc/x", ""},
		{"/abs", ""},
		{"/tmp/evil.log", ""},
		{"a/../../b", ""},
		{"..", ""},
		{".", ""},
		{"linkdir/0.log", ""},
		{"d/inner/0.log", ""},
		{"link.log", ""},
		{"d", ""}, // a directory is not a log file
	} {
		got, err := ContainerLogPath(dir, tc.rel)
		if tc.want == "" {
			if !errors.Is(err, spec.ErrInvalid) {
				t.Errorf("%q: got %q, %v; want a spec.ErrInvalid refusal", tc.rel, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.rel, got, err, tc.want)
			continue
		}
		if st, err := os.Lstat(filepath.Dir(got)); err != nil || !st.IsDir() {
			t.Errorf("%q: parent directory not created: %v", tc.rel, err)
		}
	}
	// Nothing was created outside.
	ents, _ := os.ReadDir(outside)
	if len(ents) != 1 {
		t.Errorf("outside directory changed: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(base, "b")); !os.IsNotExist(err) {
		t.Errorf("a refused path was created: %v", err)
	}
}
