package checkpoint

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A layer tar with one file, as a rootfs diff.
func layerTar(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	data := []byte("42\n")
	if err := tw.WriteHeader(&tar.Header{Name: "counter", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	return b.Bytes()
}

func names(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		out = append(out, h.Name)
	}
	return out
}

// What Write puts in an archive is the shared layout, and Open reads
// back the image it records; Extract gives the CRIU images and the diff.
func TestWriteOpenExtractRoundTrip(t *testing.T) {
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	os.MkdirAll(filepath.Join(images, "sub"), 0o700)
	os.WriteFile(filepath.Join(images, "pages-1.img"), []byte("pages"), 0o600)
	os.WriteFile(filepath.Join(images, "sub", "x.img"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "dump.log"), []byte("log"), 0o600)
	at := time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)
	path := filepath.Join(dir, "checkpoint.tar")
	err := Write(path, Contents{
		Config: Config{ID: "c1", Name: "counter", RootfsImage: "sha256:abc", RootfsImageRef: "sha256:abc", RootfsImageName: "reg/busybox:1", CheckpointedAt: at},
		Spec:   &specs.Spec{Version: "1.2.0", Annotations: map[string]string{AnnotationImageUser: "reg/busybox:1", AnnotationImageID: "sha256:abc"}},
		Images: images, RootfsDiff: bytes.NewReader(layerTar(t)), DumpLog: filepath.Join(dir, "dump.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := names(t, path)
	for _, want := range []string{ConfigFile, SpecFile, "checkpoint/", "checkpoint/pages-1.img", "checkpoint/sub/x.img", RootfsDiff, DumpLog} {
		if !slices.Contains(got, want) {
			t.Errorf("archive lacks %s: %q", want, got)
		}
	}
	// No temporary file is left beside it.
	if left, _ := filepath.Glob(filepath.Join(dir, ".checkpoint.tar.tmp-*")); len(left) != 0 {
		t.Errorf("left behind: %q", left)
	}
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.ImageName() != "reg/busybox:1" || a.ImageID() != "sha256:abc" || a.Config.Name != "counter" || !a.Config.CheckpointedAt.Equal(at) {
		t.Errorf("opened %+v", a)
	}
	out := t.TempDir()
	if err := a.Extract(out); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "checkpoint", "sub", "x.img")); err != nil || string(b) != "x" {
		t.Errorf("extracted image: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(out, RootfsDiff)); err != nil || !bytes.Equal(b, layerTar(t)) {
		t.Errorf("extracted diff: %v", err)
	}
}

// Only an absolute path to a tar with config.dump, spec.dump and
// checkpoint/ is an archive: image references and other files are not.
func TestOpenTellsArchivesFromImageReferences(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.tar")
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: ConfigFile, Mode: 0o600, Size: 2, Typeflag: tar.TypeReg})
	tw.Write([]byte("{}"))
	tw.Close()
	os.WriteFile(plain, b.Bytes(), 0o600)
	text := filepath.Join(dir, "text")
	os.WriteFile(text, []byte("not a tar at all"), 0o600)
	for _, ref := range []string{"docker.io/library/busybox:1", "sha256:0123", "relative/path.tar", dir, plain, text, filepath.Join(dir, "absent.tar")} {
		if _, err := Open(ref); !errors.Is(err, ErrNotArchive) {
			t.Errorf("Open(%q) = %v, want ErrNotArchive", ref, err)
		}
	}
}

// An archive from elsewhere cannot write outside the directory it is
// unpacked in, nor plant a link.
func TestExtractRefusesEscapesAndLinks(t *testing.T) {
	for name, h := range map[string]*tar.Header{
		"dot-dot":  {Name: "checkpoint/../../escape", Mode: 0o600, Typeflag: tar.TypeReg},
		"absolute": {Name: "/tmp/escape", Mode: 0o600, Typeflag: tar.TypeReg},
		"symlink":  {Name: "checkpoint/link", Linkname: "/etc/passwd", Typeflag: tar.TypeSymlink},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			for _, f := range []string{ConfigFile, SpecFile} {
				tw.WriteHeader(&tar.Header{Name: f, Mode: 0o600, Size: 2, Typeflag: tar.TypeReg})
				tw.Write([]byte("{}"))
			}
			tw.WriteHeader(&tar.Header{Name: "checkpoint/", Mode: 0o700, Typeflag: tar.TypeDir})
			tw.WriteHeader(h)
			tw.Close()
			path := filepath.Join(dir, "evil.tar")
			os.WriteFile(path, b.Bytes(), 0o600)
			a, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			os.Mkdir(out, 0o700)
			if err := a.Extract(out); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), h.Name) {
				t.Fatalf("Extract = %v, want ErrInvalid naming %q", err, h.Name)
			}
		})
	}
}

func TestSameImage(t *testing.T) {
	a := &Archive{Path: "/x.tar", Config: Config{RootfsImageRef: "abc", RootfsImageName: "reg/app:1"}}
	if err := SameImage(a, "sha256:abc"); err != nil {
		t.Errorf("same image refused: %v", err)
	}
	if err := SameImage(a, "sha256:def"); !errors.Is(err, ErrOtherImage) {
		t.Errorf("other image: %v", err)
	}
}
