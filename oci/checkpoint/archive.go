// Package checkpoint holds the container checkpoint archive (KEP-2008):
// the uncompressed tar that CheckpointContainer writes where kubelet asks
// and that a CreateContainer naming it restores. The layout is the one
// CRI-O, containerd and Podman share, so kubelet's /checkpoint API,
// checkpointctl and those runtimes read crivet's archives and crivet
// reads theirs:
//
//	config.dump      what the container was (checkpointctl's ContainerConfig):
//	                 its name, the image it ran (ID and the name it was asked by)
//	spec.dump        its OCI spec, with the checkpoint annotations
//	checkpoint/      CRIU's images, as runc checkpoint wrote them
//	rootfs-diff.tar  the container's changes to its image (an OCI layer tar)
//	deleted.files    paths removed from the image (JSON list; other runtimes'
//	                 archives, since crivet's diff carries whiteouts)
//	dump.log         CRIU's log of the dump
//
// It owns no state: it writes and reads the archive it is given.
package checkpoint

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/crivet/crivet/internal/errclass"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Config is config.dump.
type Config = metadata.ContainerConfig

// Annotations of spec.dump, engine-neutral (checkpointctl's names), and
// the CRI names of the container and pod that tools show.
const (
	AnnotationEngine        = metadata.CheckpointAnnotationEngine
	AnnotationName          = metadata.CheckpointAnnotationName
	AnnotationPod           = metadata.CheckpointAnnotationPod
	AnnotationPodID         = metadata.CheckpointAnnotationPodID
	AnnotationNamespace     = metadata.CheckpointAnnotationNamespace
	AnnotationPodUID        = metadata.CheckpointAnnotationPodUID
	AnnotationImageName     = metadata.CheckpointAnnotationRootfsImageName
	AnnotationImageUser     = metadata.CheckpointAnnotationRootfsImageUserRequested
	AnnotationImageID       = metadata.CheckpointAnnotationRootfsImageID
	AnnotationRuntimeName   = metadata.CheckpointAnnotationRuntimeName
	AnnotationCriuVersion   = metadata.CheckpointAnnotationCriuVersion
	AnnotationHostKernel    = metadata.CheckpointAnnotationHostKernel
	AnnotationCRIContainer  = "io.kubernetes.cri.container-name"
	AnnotationCRIPodName    = "io.kubernetes.cri.sandbox-name"
	AnnotationCRINamespace  = "io.kubernetes.cri.sandbox-namespace"
	AnnotationCRIPodUID     = "io.kubernetes.cri.sandbox-uid"
	AnnotationCRIImageName  = "io.kubernetes.cri.image-name"
	AnnotationCRIContainerT = "io.kubernetes.cri.container-type"
)

// Names inside the archive.
const (
	ConfigFile    = metadata.ConfigDumpFile
	SpecFile      = metadata.SpecDumpFile
	ImagesDir     = metadata.CheckpointDirectory
	RootfsDiff    = metadata.RootFsDiffTar
	DeletedFiles  = metadata.DeletedFilesFile
	DumpLog       = metadata.DumpLogFile
	maxConfigSize = 4 << 20
)

// ErrNotArchive: the file is not a container checkpoint archive.
var ErrNotArchive = errors.New("not a container checkpoint archive")

// ErrInvalid: a checkpoint archive that cannot be restored (a path that
// leaves the archive, a missing config.dump, ...).
var ErrInvalid = errclass.New(errclass.InvalidArgument, "invalid checkpoint archive")

// Contents is what Write puts in an archive.
type Contents struct {
	Config Config
	Spec   *specs.Spec
	// Images is the directory runc checkpoint wrote CRIU's images to.
	Images string
	// RootfsDiff, when not nil, is the container's changes as a tar.
	RootfsDiff io.Reader
	// DumpLog, when not "", is CRIU's dump log (a file).
	DumpLog string
}

// Write writes the archive to path, through a temporary file beside it
// renamed into place once complete: kubelet (or an operator) never sees a
// partial archive under the name it asked for.
func Write(path string, c Contents) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	now := time.Now()
	for _, j := range []struct {
		name string
		v    any
	}{{ConfigFile, c.Config}, {SpecFile, c.Spec}} {
		data, err := json.Marshal(j.v)
		if err != nil {
			return fmt.Errorf("checkpoint archive: %s: %w", j.name, err)
		}
		if err := writeBytes(tw, j.name, data, now); err != nil {
			return err
		}
	}
	if err := addTree(tw, c.Images, ImagesDir); err != nil {
		return fmt.Errorf("checkpoint archive: CRIU images: %w", err)
	}
	if c.RootfsDiff != nil {
		// The diff's size is known only once read: spool it to a file.
		if err := addStream(tw, RootfsDiff, c.RootfsDiff, filepath.Dir(path)); err != nil {
			return fmt.Errorf("checkpoint archive: %s: %w", RootfsDiff, err)
		}
	}
	if c.DumpLog != "" {
		if err := addFile(tw, c.DumpLog, DumpLog); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("checkpoint archive: %s: %w", DumpLog, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	return nil
}

func writeBytes(tw *tar.Writer, name string, data []byte, mod time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("checkpoint archive: %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("checkpoint archive: %s: %w", name, err)
	}
	return nil
}

func addFile(tw *tar.Writer, src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: int64(st.Mode().Perm()), Size: st.Size(), ModTime: st.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

func addStream(tw *tar.Writer, name string, r io.Reader, tmpDir string) error {
	tmp, err := os.CreateTemp(tmpDir, ".rootfs-diff-*")
	if err != nil {
		return err
	}
	defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
	if _, err := io.Copy(tmp, r); err != nil {
		return err
	}
	return addFile(tw, tmp.Name(), name)
}

// addTree adds the regular files and directories under dir as prefix/...
// CRIU writes nothing else there.
func addTree(tw *tar.Writer, dir, prefix string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: 0o700, ModTime: info.ModTime(), Typeflag: tar.TypeDir})
		case info.Mode().IsRegular():
			return addFile(tw, p, name)
		default:
			return fmt.Errorf("%s: not a regular file or directory", p)
		}
	})
}

// Archive is a checkpoint archive read from a file (Path, for Extract)
// or from a directory holding its entries (Dir: a mounted checkpoint
// image): its metadata.
type Archive struct {
	Path   string
	Dir    string
	Config Config
	Spec   specs.Spec
}

// Source names the archive's file or directory, for messages.
func (a *Archive) Source() string {
	if a.Dir != "" {
		return a.Dir
	}
	return a.Path
}

// ImageAnnotations mark an OCI image built from a checkpoint archive (its
// entries at the image's root): checkpointctl build's, CRI-O's and
// Podman's keys.
var ImageAnnotations = []string{AnnotationName, "io.kubernetes.cri-o.annotations.checkpoint.name", "io.podman.annotations.checkpoint.name"}

// IsImage says whether manifest annotations mark a checkpoint image.
func IsImage(annotations map[string]string) bool {
	for _, k := range ImageAnnotations {
		if annotations[k] != "" {
			return true
		}
	}
	return false
}

// OpenDir reads the metadata of the checkpoint whose entries are in dir
// (a checkpoint image's root): config.dump and spec.dump must be regular
// files there, and checkpoint/ a directory.
func OpenDir(dir string) (*Archive, error) {
	a := &Archive{Dir: dir}
	for _, j := range []struct {
		name string
		v    any
	}{{ConfigFile, &a.Config}, {SpecFile, &a.Spec}} {
		p := filepath.Join(dir, j.name)
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: %s: no regular file %s", ErrInvalid, dir, j.name)
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, p, err)
		}
		err = readJSON(f, &tar.Header{Size: st.Size()}, j.v)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, p, err)
		}
	}
	if st, err := os.Lstat(filepath.Join(dir, ImagesDir)); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %s: no %s directory", ErrInvalid, dir, ImagesDir)
	}
	return a, nil
}

// ImageName is the image reference the checkpointed container was created
// with (what a restore is admitted as), as the archive records it.
func (a *Archive) ImageName() string {
	if n := a.Spec.Annotations[AnnotationImageUser]; n != "" {
		return n
	}
	if a.Config.RootfsImageName != "" {
		return a.Config.RootfsImageName
	}
	return a.Spec.Annotations[AnnotationImageName]
}

// ImageID is the ID of the image the container's root filesystem was
// made from, as the archive records it ("" when it does not).
func (a *Archive) ImageID() string {
	if id := a.Spec.Annotations[AnnotationImageID]; id != "" {
		return id
	}
	return a.Config.RootfsImageRef
}

// Open reads a checkpoint archive's metadata. A path that is not a
// regular file, or not a tar holding config.dump, spec.dump and a
// checkpoint/ directory, is ErrNotArchive: CreateContainer then treats
// the name as an image reference.
func Open(path string) (*Archive, error) {
	if !filepath.IsAbs(path) {
		return nil, ErrNotArchive
	}
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return nil, ErrNotArchive
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint archive %s: %w", path, err)
	}
	defer f.Close()
	a := &Archive{Path: path}
	var haveConfig, haveSpec, haveImages bool
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !haveConfig && !haveSpec {
				return nil, ErrNotArchive
			}
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case name == ConfigFile:
			if err := readJSON(tr, h, &a.Config); err != nil {
				return nil, fmt.Errorf("%w: %s: %s: %v", ErrInvalid, path, name, err)
			}
			haveConfig = true
		case name == SpecFile:
			if err := readJSON(tr, h, &a.Spec); err != nil {
				return nil, fmt.Errorf("%w: %s: %s: %v", ErrInvalid, path, name, err)
			}
			haveSpec = true
		case name == ImagesDir || strings.HasPrefix(name, ImagesDir+"/"):
			haveImages = true
		}
	}
	if !haveConfig || !haveSpec || !haveImages {
		return nil, ErrNotArchive
	}
	return a, nil
}

func readJSON(r io.Reader, h *tar.Header, v any) error {
	if h.Size > maxConfigSize {
		return fmt.Errorf("%d bytes, more than %d", h.Size, maxConfigSize)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize))
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// Extract unpacks the archive into dir (which must exist and be empty):
// regular files and directories only, each beneath dir, so an archive
// from elsewhere cannot write outside it or plant a link.
func (a *Archive) Extract(dir string) error {
	f, err := os.Open(a.Path)
	if err != nil {
		return fmt.Errorf("checkpoint archive %s: %w", a.Path, err)
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, a.Path, err)
		}
		name := filepath.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("%w: %s: entry %q leaves the archive", ErrInvalid, a.Path, h.Name)
		}
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("checkpoint archive %s: %s: %w", a.Path, name, err)
			}
		default:
			return fmt.Errorf("%w: %s: entry %q is not a regular file or directory", ErrInvalid, a.Path, h.Name)
		}
	}
}

// ReadDeletedFiles reads an extracted archive's deleted.files (nil when
// there is none).
func ReadDeletedFiles(dir string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, DeletedFiles))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, DeletedFiles, err)
	}
	return out, nil
}

// ErrOtherImage: the node's image under the name a checkpoint records is
// not the image the checkpoint was made from (the name moved), so its
// root filesystem changes and processes would run on other files.
var ErrOtherImage = errclass.New(errclass.FailedPrecondition, "checkpoint was made from another image")

// SameImage checks that id is the image the archive was made from, when
// the archive records one (IDs compare with or without "sha256:").
func SameImage(a *Archive, id string) error {
	want := strings.TrimPrefix(a.ImageID(), "sha256:")
	if want == "" || want == strings.TrimPrefix(id, "sha256:") {
		return nil
	}
	return fmt.Errorf("%w: %s records image %s (%s), the node's is %s", ErrOtherImage, a.Source(), want, a.ImageName(), id)
}
