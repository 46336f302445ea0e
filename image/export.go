package image

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	ocilayout "go.podman.io/image/v5/oci/layout"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
)

// ExportRequest is one stored image to write to an archive (crivet image
// export), for Import on another node.
type ExportRequest struct {
	// Image is found as ImageStatus finds it: a name, a digest or an ID.
	Image string
	// Path is the archive to write; it must not exist.
	Path string
	// Format is FormatDockerArchive, FormatOCIArchive, or "" for the one
	// that needs no conversion of the stored manifest. A conversion
	// rewrites the image config, so the image ID changes.
	Format string
}

// Export writes a stored image, with the name it was asked by (or its
// first tag), to an archive. The store is only read. The archive appears
// complete or not at all: it is written beside Path and renamed.
// An oci-archive carries the image's sigstore and GPG signatures and its
// Sigstore bundles (with the index a bundle signs, when it signs the
// index the image was chosen from), as Import reads them
// (archive_bundles.go), so an export and import round trip re-verifies
// offline. A
// docker-archive has no place for signatures: none are written; neither
// are they for a manifest the export converted (they sign the original).
func (s *Service) Export(ctx context.Context, req ExportRequest) (*Image, error) {
	img, err := s.Get(req.Image)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", req.Image, err)
	}
	path, err := filepath.Abs(req.Path)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", req.Image, err)
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("export %s: %s already exists", req.Image, path)
	}
	if strings.Contains(path, ":") {
		// Both archive transports split their reference at a colon.
		return nil, fmt.Errorf("export %s: %s: a path with ':' is not supported", req.Image, path)
	}
	name := exportName(img, req.Image)
	f, err := createBeside(path)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", req.Image, err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)

	src, err := istorage.Transport.NewStoreReference(s.store, nil, img.StorageID())
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", req.Image, err)
	}
	// Only an export in the native format writes the stored manifest's
	// image, which its signatures can vouch for.
	native, err := s.nativeFormat(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", req.Image, err)
	}
	format := req.Format
	if format == "" {
		format = native
	}
	work, err := os.MkdirTemp(filepath.Join(s.cfg.Root, "tmp"), "export-")
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", req.Image, err)
	}
	defer os.RemoveAll(work)
	// An oci-archive is written as a layout first, so the signatures can
	// be added to it, and then tarred (what the library's oci-archive
	// transport does too).
	layoutDir := filepath.Join(work, "layout")
	var dest types.ImageReference
	switch format {
	case FormatDockerArchive:
		dest, err = dockerarchive.NewReference(tmp, name)
	case FormatOCIArchive:
		ann := ""
		if name != nil {
			ann = name.String()
		}
		dest, err = ocilayout.NewReference(layoutDir, ann)
	default:
		err = fmt.Errorf("format %q: want %s or %s", format, FormatDockerArchive, FormatOCIArchive)
	}
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", req.Image, err)
	}
	sys := s.systemContext()
	sys.BigFilesTemporaryDir = work
	written, err := copy.Image(ctx, acceptVerified(), dest, src, &copy.Options{
		SourceCtx: sys, DestinationCtx: sys, RemoveSignatures: true,
	})
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", req.Image, err)
	}
	var sigs exportSignatures
	if format == FormatOCIArchive && format == native {
		if sigs, err = s.writeExportSignatures(ctx, img, src, layoutDir, written); err != nil {
			return nil, fmt.Errorf("export %s: signatures: %w", req.Image, err)
		}
	} else if id := img.StorageID(); len(s.keptBundles(id)) > 0 || len(s.librarySignatureSets(id)) > 0 || len(s.keptSignatures(id)) > 0 {
		s.log.Warn("the image's signatures are not exported: a docker-archive has no place for them, and a converted manifest is not the one they sign",
			"image", img.ID, "path", path, "format", format)
	}
	if format == FormatOCIArchive {
		if err := s.tarExport(layoutDir, tmp); err != nil {
			return nil, fmt.Errorf("export %s: %w", req.Image, err)
		}
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("export %s: %s appeared meanwhile", req.Image, path)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("export %s: %w", req.Image, err)
	}
	s.log.Info("image exported", "image", img.ID, "path", path, "format", format,
		"signatures", len(sigs.sigstore), "gpgSignatures", len(sigs.gpg), "bundles", len(sigs.bundles))
	return img, nil
}

// tarExport writes the layout dir into the temporary archive tmp.
func (s *Service) tarExport(dir, tmp string) error {
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if err := tarLayout(dir, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// createBeside creates a new, empty temporary file in path's directory for
// the archive to be written to and renamed to path. It is created 0666,
// like any file a command writes, for the umask to restrict: the archive
// of a private image is no more readable than the operator's umask lets
// it be (the library keeps the mode of the file it writes into).
func createBeside(path string) (*os.File, error) {
	prefix := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".crivet-")
	for range 100 {
		f, err := os.OpenFile(prefix+strconv.FormatUint(rand.Uint64(), 36), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, os.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("creating a temporary file beside %s: too many collisions", path)
}

// nativeFormat is the archive format that holds the stored manifest as
// it is: OCI manifests go to an oci-archive, Docker ones to a docker-archive.
func (s *Service) nativeFormat(ctx context.Context, ref types.ImageReference) (string, error) {
	src, err := ref.NewImageSource(ctx, s.systemContext())
	if err != nil {
		return "", err
	}
	defer src.Close()
	_, mime, err := src.GetManifest(ctx, nil)
	if err != nil {
		return "", err
	}
	if mime == imgspecv1.MediaTypeImageManifest {
		return FormatOCIArchive, nil
	}
	return FormatDockerArchive, nil
}

// exportName is the tag the archive gives the image: the name it was
// asked by when that is one of its tags, else its first tag.
func exportName(img *Image, asked string) reference.NamedTagged {
	if named, err := reference.ParseNormalizedNamed(asked); err == nil {
		if nt, ok := reference.TagNameOnly(named).(reference.NamedTagged); ok && slices.Contains(img.RepoTags, nt.String()) {
			return nt
		}
	}
	for _, t := range img.RepoTags {
		if named, err := reference.ParseNormalizedNamed(t); err == nil {
			if nt, ok := named.(reference.NamedTagged); ok {
				return nt
			}
		}
	}
	return nil
}
