package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/crivet/crivet/image/trust"
	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	ociarchive "go.podman.io/image/v5/oci/archive"
	ocilayout "go.podman.io/image/v5/oci/layout"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// Archive formats Import reads and Export writes, named as the library's
// transports (and so as containers-policy.json(5) transport scopes).
const (
	FormatDockerArchive = "docker-archive"
	FormatOCIArchive    = "oci-archive"
	FormatOCILayout     = "oci" // a directory, import only
)

// ErrBadArchive: the file is not an archive Import can read.
var ErrBadArchive = errors.New("unusable image archive")

// ImportRequest is one archive to load into the store (crivet image import).
type ImportRequest struct {
	// Path is a docker-archive or oci-archive tar file, or an OCI layout directory.
	Path string
	// Format is FormatDockerArchive, FormatOCIArchive, FormatOCILayout, or
	// "" to tell from the content.
	Format string
	// Name names the image when the archive holds exactly one image and
	// gives it no name (a docker-archive without RepoTags, an OCI entry
	// without a ref.name annotation).
	Name string
}

// importEntry is one image of an archive.
type importEntry struct {
	// src is what the copy reads.
	src types.ImageReference
	// names are the names the image will have in the store; sources[i]
	// is names[i]'s record (Manifest filled in by the check).
	names   []reference.Named
	sources []*ImportSource
	// Filled in by checkImport.
	m           *remoteManifest
	indexDigest digest.Digest
	sigs        *signatureSet // sigstore attachments of the layout for m
	bundles     []keptBundle  // the layout's Sigstore bundles of m (or its index)
	// signed is the manifest sigs and bundles are for: m's digest, or a
	// manifest of the same image the layout carries (signedManifest);
	// signedBlob is that manifest when it is not m. Records name signed.
	signed     digest.Digest
	signedBlob []byte
}

// verified is the manifest the image is recorded (and so re-verified) as.
func (e *importEntry) verified() digest.Digest {
	if e.signed != "" {
		return e.signed
	}
	return e.m.Digest
}

// openedArchive is an archive listed into entries.
type openedArchive struct {
	entries []*importEntry
	// sigs are a layout's sigstore attachments by the manifest they sign.
	sigs map[digest.Digest]*signatureSet
	// bundles are a layout's Sigstore bundle referrers by subject.
	bundles map[digest.Digest][]layoutBundle
	dir     string // a layout's copy; "" for a docker-archive
	close   func()
}

// Import stores the images of an archive (`crivet image import`), for
// nodes that cannot reach a registry. Each image gets the names the
// archive carries, so kubelet finds it by them, and its record keeps the
// archive it came from: at create time the namespace's policy is
// evaluated for that transport and scope, not as if the name came from a
// registry.
//
// The node's global policy decides at import, for the archive's
// transport, like a pull's; sigstore signatures an OCI layout carries as
// attachments (tags "sha256-<hex>.sig", the registry convention) and the
// Sigstore bundles it carries as OCI 1.1 referrers (archive_bundles.go)
// are verified and kept, so the create-time check re-verifies offline. Every image of the archive is checked (manifest,
// limits, policy) before any is stored, so a refusal leaves nothing.
func (s *Service) Import(ctx context.Context, req ImportRequest) ([]*Image, error) {
	path, err := filepath.Abs(req.Path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", req.Path, err)
	}
	format := req.Format
	if format == "" {
		if format, err = detectFormat(path, s.archiveOpts()); err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
	}
	pol, err := s.cfg.Policies.Global()
	if err != nil {
		s.trust.Log(trust.Decision{Stage: "import", Reference: format + ":" + path, Err: err})
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	work, err := os.MkdirTemp(filepath.Join(s.cfg.Root, "tmp"), "import-")
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	defer os.RemoveAll(work)
	sys := s.systemContext()
	sys.BigFilesTemporaryDir = work

	a, err := openArchive(sys, path, format, req.Name, work, s.archiveOpts())
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	defer a.close()
	for _, e := range a.entries {
		if err := s.checkImport(ctx, sys, e, a, pol); err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
	}
	var out []*Image
	for _, e := range a.entries {
		img, err := s.storeImport(ctx, sys, e, pol)
		if err != nil {
			return out, fmt.Errorf("import %s: %w", path, err)
		}
		out = append(out, img)
	}
	s.storeChanged()
	return out, nil
}

// detectFormat tells the archive kind from its content: a directory is
// an OCI layout; a tar (compressed or not) with manifest.json is a
// docker-archive (docker save, including Docker 25's, which also carries
// an OCI index), one with oci-layout an oci-archive. Decompressing is
// bounded like unpacking (detectionReader): a bomb is refused here already.
func detectFormat(path string, opts archiveOpts) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return FormatOCILayout, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	rd, err := opts.detectionReader(f)
	if err != nil {
		return "", err
	}
	defer rd.Close()
	tr := tar.NewReader(rd)
	oci := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, ErrImageLimit) {
			return "", err
		}
		if err != nil {
			return "", fmt.Errorf("%w: not a tar archive: %w", ErrBadArchive, err)
		}
		switch filepath.Clean(h.Name) {
		case "manifest.json":
			return FormatDockerArchive, nil
		case imgspecv1.ImageLayoutFile:
			oci = true
		}
	}
	if oci {
		return FormatOCIArchive, nil
	}
	return "", fmt.Errorf("%w: neither manifest.json (docker-archive) nor oci-layout (oci-archive) in it", ErrBadArchive)
}

// openArchive lists the archive at path; what the library reads of it is
// bounded and sanitized first (archive.go), in work.
func openArchive(sys *types.SystemContext, path, format, name, work string, opts archiveOpts) (*openedArchive, error) {
	switch format {
	case FormatDockerArchive:
		tarPath, release, err := dockerArchiveTar(path, work, opts)
		if err != nil {
			return nil, err
		}
		a, err := openDockerArchive(noInflation(sys, work), path, tarPath, name)
		if err != nil {
			release()
			return nil, err
		}
		closeReader := a.close
		a.close = func() { closeReader(); release() }
		return a, nil
	case FormatOCIArchive:
		// Unpacked once (the library would unpack it again for each
		// image and each check, unbounded).
		dir := filepath.Join(work, "layout")
		if err := unpackOCIArchive(path, dir, opts); err != nil {
			return nil, err
		}
		return openLayout(path, dir, format, name)
	case FormatOCILayout:
		// Copied, so that the library, which follows links, reads only
		// what was read beneath the layout.
		dir := filepath.Join(work, "layout")
		if err := copyLayoutDir(path, dir, opts); err != nil {
			return nil, err
		}
		return openLayout(path, dir, format, name)
	}
	return nil, fmt.Errorf("archive format %q: want %s, %s or %s", format, FormatDockerArchive, FormatOCIArchive, FormatOCILayout)
}

// openDockerArchive lists the docker-archive at path, read from tarPath
// (dockerArchiveTar) with sys (noInflation).
func openDockerArchive(sys *types.SystemContext, path, tarPath, name string) (*openedArchive, error) {
	r, err := dockerarchive.NewReader(sys, tarPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	images, err := r.List()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	a := &openedArchive{close: func() { r.Close() }}
	for i, refs := range images {
		e := &importEntry{src: refs[0]}
		for _, ref := range refs {
			if nt, ok := ref.DockerReference().(reference.NamedTagged); ok {
				e.names = append(e.names, nt)
			}
		}
		if len(e.names) == 0 {
			named, err := nameFor(name, len(images), fmt.Sprintf("image @%d has no RepoTags", i))
			if err != nil {
				a.close()
				return nil, err
			}
			e.names = append(e.names, named)
		}
		for _, n := range e.names {
			// The identity the policy sees is the library's own reference
			// for this file and tag, as `skopeo copy docker-archive:` has.
			lib, err := dockerarchive.NewReference(path, n.(reference.NamedTagged))
			if err != nil {
				a.close()
				return nil, err
			}
			e.sources = append(e.sources, sourceOf(lib, path, n))
		}
		a.entries = append(a.entries, e)
	}
	if len(a.entries) == 0 {
		a.close()
		return nil, fmt.Errorf("%w: no image in it", ErrBadArchive)
	}
	return a, nil
}

// nameFor is the name of an image its archive leaves unnamed: --name,
// only when that image is the archive's only one.
func nameFor(name string, images int, why string) (reference.Named, error) {
	if name == "" || images != 1 {
		return nil, fmt.Errorf("%s: name it with --name (when the archive holds one image)", why)
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, fmt.Errorf("--name %q: %w: %w", name, ErrInvalidReference, err)
	}
	named = reference.TagNameOnly(named)
	if _, ok := named.(reference.NamedTagged); !ok {
		return nil, fmt.Errorf("--name %q: want a tagged name, not a digest", name)
	}
	return named, nil
}

// sigstoreAttachmentTag is the tag under which sigstore signatures of a
// manifest are stored next to it, in registries and layouts alike.
var sigstoreAttachmentTag = regexp.MustCompile(`^sha256-([0-9a-f]{64})\.sig$`)

// containerdNameAnnotation carries the full name in Docker 25+ and
// containerd exports, whose ref.name is only the tag.
const containerdNameAnnotation = "io.containerd.image.name"

// maxIndexSize bounds a layout's index.json.
const maxIndexSize = 4 << 20

// openLayout lists an OCI layout: each index entry is an image, except
// sigstore attachments, which are read as signatures of the manifest
// their tag names, and Sigstore bundle referrers, read as bundles of
// their subject.
func openLayout(path, dir, format, name string) (*openedArchive, error) {
	index, err := readLayoutIndex(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	lr, err := readLayoutBundles(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	referrerManifests := lr.refs
	a := &openedArchive{close: func() {}, sigs: map[digest.Digest]*signatureSet{}, bundles: lr.bundles, dir: dir}
	var images []int
	for i, d := range index.Manifests {
		if referrerManifests[d.Digest] {
			continue
		}
		if m := sigstoreAttachmentTag.FindStringSubmatch(d.Annotations[imgspecv1.AnnotationRefName]); m != nil {
			signed := digest.NewDigestFromEncoded(digest.SHA256, m[1])
			set, err := readAttachment(dir, d, signed, format+":"+path)
			if err != nil {
				return nil, fmt.Errorf("%w: sigstore attachment %s: %w", ErrBadArchive, d.Annotations[imgspecv1.AnnotationRefName], err)
			}
			a.sigs[signed] = set
			continue
		}
		images = append(images, i)
	}
	// GPG signatures join the manifest's set, as the library stores both
	// kinds together.
	for signed, sigs := range lr.gpg {
		set := a.sigs[signed]
		if set == nil {
			set = &signatureSet{Manifest: signed, Source: format + ":" + path}
			a.sigs[signed] = set
		}
		for _, sig := range sigs {
			set.Sizes = append(set.Sizes, len(sig))
			set.Blob = append(set.Blob, sig...)
		}
	}
	for _, i := range images {
		d := index.Manifests[i]
		refName := d.Annotations[imgspecv1.AnnotationRefName]
		var named reference.Named
		for _, n := range []string{d.Annotations[containerdNameAnnotation], refName} {
			if p, err := reference.ParseNormalizedNamed(n); err == nil && n != "" && strings.ContainsAny(n, "/:") {
				named = reference.TagNameOnly(p)
				break
			}
		}
		if _, ok := named.(reference.NamedTagged); !ok {
			if named, err = nameFor(name, len(images), fmt.Sprintf("image @%d has no usable name (ref.name %q)", i, refName)); err != nil {
				return nil, err
			}
		}
		src, err := ocilayout.NewIndexReference(dir, i)
		if err != nil {
			return nil, err
		}
		lib, err := layoutIdentity(path, format, refName)
		if err != nil {
			return nil, err
		}
		a.entries = append(a.entries, &importEntry{src: src, names: []reference.Named{named}, sources: []*ImportSource{sourceOf(lib, path, named)}})
	}
	if len(a.entries) == 0 {
		return nil, fmt.Errorf("%w: no image in it", ErrBadArchive)
	}
	return a, nil
}

// layoutIdentity is the library's reference for the file, as `skopeo
// copy oci-archive:FILE:NAME` would evaluate the policy for it. A ref.name
// the library would not accept names nothing.
func layoutIdentity(path, format, refName string) (types.ImageReference, error) {
	newRef := ociarchive.NewReference
	if format == FormatOCILayout {
		newRef = ocilayout.NewReference
	}
	ref, err := newRef(path, refName)
	if err != nil && refName != "" {
		ref, err = newRef(path, "")
	}
	return ref, err
}

func readLayoutIndex(dir string) (*imgspecv1.Index, error) {
	data, err := readBeneath(dir, imgspecv1.ImageIndexFile, maxIndexSize)
	if err != nil {
		return nil, err
	}
	var index imgspecv1.Index
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	for _, d := range index.Manifests {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("index.json entry %q: %w", d.Digest, err)
		}
	}
	return &index, nil
}

// maxAttachmentLayers bounds the signatures one attachment may carry.
const maxAttachmentLayers = 64

// readAttachment reads a sigstore attachment manifest of a layout into
// the library's stored-signature format: each layer is one signature
// (payload, and annotations holding the signature, certificate, bundle),
// read the way the library reads an attachment from a registry.
func readAttachment(dir string, d imgspecv1.Descriptor, signed digest.Digest, source string) (*signatureSet, error) {
	blob := func(dg digest.Digest, limit int64) ([]byte, error) {
		if err := dg.Validate(); err != nil {
			return nil, err
		}
		data, err := readBeneath(dir, imgspecv1.ImageBlobsDir+"/"+dg.Algorithm().String()+"/"+dg.Encoded(), limit)
		if err != nil {
			return nil, err
		}
		if dg.Algorithm().FromBytes(data) != dg {
			return nil, fmt.Errorf("blob %s: digest mismatch", dg)
		}
		return data, nil
	}
	data, err := blob(d.Digest, maxManifestSize)
	if err != nil {
		return nil, err
	}
	var m imgspecv1.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if len(m.Layers) > maxAttachmentLayers {
		return nil, fmt.Errorf("%d signatures, more than %d", len(m.Layers), maxAttachmentLayers)
	}
	set := &signatureSet{Manifest: signed, Source: source}
	for _, l := range m.Layers {
		payload, err := blob(l.Digest, maxManifestSize)
		if err != nil {
			return nil, err
		}
		chunk, err := json.Marshal(struct {
			MIMEType    string            `json:"mimeType"`
			Payload     []byte            `json:"payload"`
			Annotations map[string]string `json:"annotations"`
		}{l.MediaType, payload, l.Annotations})
		if err != nil {
			return nil, err
		}
		// The library's blob format of a non-GPG signature: a zero byte,
		// the format name, a newline, the data (internal/signature.Blob).
		sig := append([]byte("\x00sigstore-json\n"), chunk...)
		set.Sizes = append(set.Sizes, len(sig))
		set.Blob = append(set.Blob, sig...)
	}
	return set, nil
}

// sourceOf records how the library's reference lib, for the archive at
// path, presents itself to the policy.
func sourceOf(lib types.ImageReference, path string, name reference.Named) *ImportSource {
	src := &ImportSource{
		Transport:        lib.Transport().Name(),
		Path:             path,
		Name:             name.String(),
		PolicyIdentity:   lib.PolicyConfigurationIdentity(),
		PolicyNamespaces: lib.PolicyConfigurationNamespaces(),
	}
	if d := lib.DockerReference(); d != nil {
		src.DockerReference = d.String()
	}
	return src
}

// checkImport validates one image's manifest, limits and signatures under
// the global policy, for every name it will get. Nothing is stored.
func (s *Service) checkImport(ctx context.Context, sys *types.SystemContext, e *importEntry, a *openedArchive, pol *policy.Policy) error {
	label := e.sources[0].String()
	src, err := e.src.NewImageSource(ctx, sys)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", label, ErrBadArchive, err)
	}
	defer src.Close()
	bad := func(err error) error { return fmt.Errorf("%s: %w", label, &badManifest{err}) }
	top, topMIME, err := src.GetManifest(ctx, nil)
	if err != nil {
		return bad(err)
	}
	topM, err := validateManifest(top, topMIME)
	if err != nil {
		return bad(err)
	}
	unparsed := image.UnparsedInstance(src, nil)
	if topM.List != nil {
		inst, err := topM.List.ChooseInstance(sys)
		if err != nil {
			return fmt.Errorf("%s: index: %w", label, err)
		}
		if err := inst.Validate(); err != nil {
			return bad(fmt.Errorf("index entry %q: %w", inst, err))
		}
		e.indexDigest = topM.Digest
		unparsed = image.UnparsedInstance(src, &inst)
	}
	blob, mime, err := unparsed.Manifest(ctx)
	if err != nil {
		return bad(err)
	}
	if e.m, err = validateManifest(blob, mime); err != nil {
		return bad(err)
	}
	if e.m.List != nil {
		return bad(errors.New("image index lists another index"))
	}
	if err := checkManifestLimits(s.cfg, e.m); err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	if e.signed, e.signedBlob, err = a.signedManifest(e); err != nil {
		return fmt.Errorf("%s: %w: %w", label, ErrBadArchive, err)
	}
	var subjects []digest.Digest
	signedBlob := blob
	if e.signed != "" {
		e.sigs = a.sigs[e.signed]
		e.bundles, subjects = a.importBundles(e, e.signed)
		if e.signedBlob != nil {
			signedBlob = e.signedBlob
		}
	}
	bundles := trust.BundleBytes(e.bundles)
	for _, src := range e.sources {
		src.Manifest = e.verified()
		ref := trust.NewImportRef(src)
		start := time.Now()
		if e.sigs != nil || len(bundles) > 0 {
			// The manifest the signatures and bundles are for, read as the
			// library reads signatures (a dir: copy).
			err = s.trust.CheckSignedManifest(ctx, signedBlob, e.sigs, bundles, subjects, ref, pol)
		} else {
			err = pol.Check(ctx, &trust.AsIdentity{UnparsedImage: unparsed, Ref: ref})
		}
		s.trust.Log(trust.Decision{Stage: "import", Reference: src.String(), Identity: src.String(), Digest: e.verified().String(),
			Pol: pol, Scope: pol.ScopeFor(ref), Err: err, Duration: time.Since(start)})
		if err != nil {
			return fmt.Errorf("%s: %w", src.String(), err)
		}
	}
	return nil
}

// storeImport copies one checked image into the store under its names,
// keeps the layout's signatures of it, and records where it came from.
// A failed copy removes what it wrote.
func (s *Service) storeImport(ctx context.Context, sys *types.SystemContext, e *importEntry, pol *policy.Policy) (*Image, error) {
	label := e.sources[0].String()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Watched for max_image_size like a pull (a compression bomb stops
	// before it is unpacked); a local file has no progress timeout.
	w, err := s.newWatch("import-copy-", label, 0, cancel, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	defer w.stop()
	sysCopy := *sys
	sysCopy.BigFilesTemporaryDir = w.tmpDir
	destRef, err := istorage.Transport.NewStoreReference(s.store, e.names[0], "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	configDigest, inst := e.m.Config.Digest, e.m.Digest
	id := configDigest.Encoded()
	unlock, err := s.lockImage(id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	_, existErr := s.store.Image(id)
	existed := existErr == nil
	prevSigs := s.librarySignatureSets(id)
	layersBefore := s.layerIDs()
	w.startCopy(e.m)
	_, err = copy.Image(ctx, acceptVerified(), destRef, e.src, &copy.Options{
		SourceCtx:          sys,
		DestinationCtx:     &sysCopy,
		ImageListSelection: copy.CopySystemImage,
		Progress:           w.progress,
		ProgressInterval:   progressInterval,
	})
	if err == nil && !existed {
		err = s.enforceStoredSize(ctx, configDigest)
	}
	if err != nil {
		unlock()
		s.removePulledLayers(layersBefore, e.m)
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrImageLimit) {
			err = cause
		}
		return nil, fmt.Errorf("%s: copy: %w", label, err)
	}
	simg, err := s.storedImage(destRef, configDigest)
	if err == nil && simg.Digest != inst && !slices.Contains(simg.Digests, inst) {
		// The copy read the archive again: it must have stored what was
		// checked, or the file changed meanwhile.
		err = fmt.Errorf("stored manifest is not the verified %s: the archive changed during the import", inst)
		if !existed {
			_, _ = s.store.DeleteImage(id, true)
		}
	}
	if err != nil {
		unlock()
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	s.keepDisplacedSets(simg.ID, prevSigs)
	if e.sigs != nil {
		s.keepSignatureSet(simg.ID, e.sigs)
	}
	if e.signedBlob != nil {
		// The create-time check reads the manifest the record names from
		// the store, as it reads a pulled image's.
		key := storage.ImageDigestManifestBigDataNamePrefix + "-" + e.signed.String()
		if err := s.store.SetImageBigData(simg.ID, key, e.signedBlob, manifest.Digest); err != nil {
			unlock()
			return nil, fmt.Errorf("%s: keeping the signed manifest: %w", label, err)
		}
	}
	s.keepBundles(simg.ID, e.bundles)
	img, err := s.recordImport(simg, e, pol)
	unlock()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	for _, n := range e.names {
		s.markMovedElsewhere(n, simg.ID)
	}
	s.log.Info("image imported", "image", img.ID, "source", label, "names", img.RepoTags, "signatures", e.sigs != nil, "bundles", len(e.bundles))
	return img, nil
}

// recordImport gives the image all its names and records each with the
// archive it came from. Callers hold the image's lock.
func (s *Service) recordImport(simg *storage.Image, e *importEntry, pol *policy.Policy) (*Image, error) {
	names := make([]string, len(e.names))
	for i, n := range e.names {
		names[i] = n.String()
	}
	if err := s.store.AddNames(simg.ID, names); err != nil {
		return nil, err
	}
	rec, err := s.record(simg.ID)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	if rec.ManifestDigest == "" {
		// A pulled image keeps its pull's manifest; each import
		// reference carries its own.
		rec.ManifestDigest, rec.IndexDigest = e.m.Digest, e.indexDigest
	}
	var pin digest.Digest
	if e.sigs != nil {
		pin = e.sigs.Digest()
	} else if set := s.librarySignatures(simg.ID, e.verified()); set != nil {
		pin = set.Digest()
	}
	for i, n := range e.names {
		rec.AddReference(Reference{User: n.String(), Resolved: n.String(), Pulled: now, Import: e.sources[i],
			Manifest: e.verified(), Index: e.indexDigest, Signatures: pin})
	}
	rec.AddDecision(Decision{PolicyPath: pol.Path, PolicyDigest: pol.Digest, Reference: e.sources[0].String(), Allowed: true, Time: now, Signatures: pin})
	if cfg, err := s.store.ImageBigData(simg.ID, e.m.Config.Digest.String()); err == nil {
		var c struct {
			Config struct{ User string } `json:"config"`
		}
		if json.Unmarshal(cfg, &c) == nil {
			rec.User = c.Config.User
		}
	}
	if err := s.saveRecord(simg.ID, rec); err != nil {
		return nil, err
	}
	fresh, err := s.store.Image(simg.ID)
	if err != nil {
		return nil, err
	}
	return s.view(fresh, rec)
}
