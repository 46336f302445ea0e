package image

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A checkpoint's rootfs diff lands in the new root filesystem: files
// added, whiteouts deleting, and another runtime's deleted.files list
// removing paths, each resolved inside the root even when it names a way
// out.
func TestApplyRootfsDiffStaysInsideTheRoot(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	for _, f := range []string{"gone-by-whiteout", "gone-by-list", "kept"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("image"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A link the container made, pointing out of its root.
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "count", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
	tw.Write([]byte("42\n"))
	tw.WriteHeader(&tar.Header{Name: ".wh.gone-by-whiteout", Mode: 0o600, Typeflag: tar.TypeReg})
	tw.Close()

	s := &Service{}
	deleted := []string{"/gone-by-list", "../../" + filepath.Base(outside) + "/victim", "/escape/victim", "/"}
	if err := s.ApplyRootfsDiff(root, &b, deleted); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(root, "count")); err != nil || string(data) != "42\n" {
		t.Errorf("added file: %q %v", data, err)
	}
	for _, gone := range []string{"gone-by-whiteout", "gone-by-list"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", gone, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "kept")); err != nil {
		t.Errorf("kept: %v", err)
	}
	if data, err := os.ReadFile(victim); err != nil || string(data) != "host" {
		t.Errorf("a file outside the root was touched: %q %v", data, err)
	}

	// A diff writing through that link writes inside the root, or fails.
	b.Reset()
	tw = tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "escape/victim", Mode: 0o644, Size: 4, Typeflag: tar.TypeReg})
	tw.Write([]byte("evil"))
	tw.Close()
	_ = s.ApplyRootfsDiff(root, &b, nil)
	if data, err := os.ReadFile(victim); err != nil || string(data) != "host" {
		t.Errorf("a diff wrote outside the root: %q %v", data, err)
	}
}
