package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/crivet/crivet/image/referrers"
	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
)

// Sigstore bundles and legacy sigstore signatures that travel with an OCI
// layout (or oci-archive), for air-gapped nodes. A bundle is an OCI 1.1
// referrer, as `cosign save` and `oras copy --recursive` write it: an
// image manifest of artifactType application/vnd.dev.sigstore.bundle.v0.3+json
// whose subject is the signed manifest and whose one bundle layer is the
// bundle, listed in index.json (cosign) or present only as a blob (oras).
// Legacy signatures are the "sha256-<hex>.sig" attachments (readAttachment).

// archiveBundleSource is keptBundle.Source for a bundle that came in an archive.
const archiveBundleSource = "archive"

// Bounds of what a layout's referrers may cost at import: a referrer
// manifest is a few hundred bytes, a bundle a few KiB.
const (
	maxLayoutBundles              = 64
	maxReferrerManifestSize       = 64 << 10
	maxLayoutBundleSize     int64 = 1 << 20
)

// emptyJSON is the OCI empty descriptor's content, the config of an
// artifact manifest.
var emptyJSON = []byte("{}")

// layoutBundle is one bundle found in a layout, for the manifest subject.
type layoutBundle struct {
	subject digest.Digest
	bundle  []byte
}

// readLayoutBundles finds every bundle referrer among the layout's blobs
// (which include those index.json lists). It returns them by subject and
// the digests of the artifact manifests that have a subject (bundles and
// other referrers), which are not images to import.
// A referrer whose bundle is missing, too large or does not match its
// digest makes the archive unusable, as a bad attachment does.
func readLayoutBundles(dir string) (map[digest.Digest][]layoutBundle, map[digest.Digest]bool, error) {
	byAlg := filepath.Join(dir, imgspecv1.ImageBlobsDir, digest.SHA256.String())
	entries, err := os.ReadDir(byAlg)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	out := map[digest.Digest][]layoutBundle{}
	refs := map[digest.Digest]bool{}
	n := 0
	for _, ent := range entries {
		// dir is crivet's own copy of the layout: regular files only.
		info, err := ent.Info()
		if err != nil || !info.Mode().IsRegular() || info.Size() > maxReferrerManifestSize {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, ent.Name())
		if d.Validate() != nil {
			continue
		}
		data, err := readBeneath(dir, imgspecv1.ImageBlobsDir+"/sha256/"+d.Encoded(), maxReferrerManifestSize)
		if err != nil {
			return nil, nil, err
		}
		// Most small blobs are configs: skip them before parsing.
		if !bytes.Contains(data, []byte(`"subject"`)) {
			continue
		}
		var m struct {
			MediaType    string                 `json:"mediaType"`
			ArtifactType string                 `json:"artifactType"`
			Layers       []imgspecv1.Descriptor `json:"layers"`
			Subject      *imgspecv1.Descriptor  `json:"subject"`
		}
		if json.Unmarshal(data, &m) != nil || m.MediaType != imgspecv1.MediaTypeImageManifest ||
			m.ArtifactType == "" || m.Subject == nil {
			continue
		}
		if digest.FromBytes(data) != d {
			return nil, nil, fmt.Errorf("referrer %s: digest mismatch", d)
		}
		// An artifact about another manifest (a bundle, an SBOM, …) is
		// not an image to import, even when index.json lists it.
		refs[d] = true
		if m.ArtifactType != referrers.BundleMediaType {
			continue
		}
		if err := m.Subject.Digest.Validate(); err != nil {
			return nil, nil, fmt.Errorf("bundle referrer %s: subject: %w", d, err)
		}
		var layer *imgspecv1.Descriptor
		for i := range m.Layers {
			if m.Layers[i].MediaType == referrers.BundleMediaType {
				if layer != nil {
					return nil, nil, fmt.Errorf("bundle referrer %s: more than one bundle layer", d)
				}
				layer = &m.Layers[i]
			}
		}
		if layer == nil {
			return nil, nil, fmt.Errorf("bundle referrer %s: no layer of media type %s", d, referrers.BundleMediaType)
		}
		if err := layer.Digest.Validate(); err != nil {
			return nil, nil, fmt.Errorf("bundle referrer %s: layer: %w", d, err)
		}
		if layer.Size < 0 || layer.Size > maxLayoutBundleSize {
			return nil, nil, fmt.Errorf("bundle referrer %s: bundle of %d bytes, more than %d", d, layer.Size, maxLayoutBundleSize)
		}
		if n++; n > maxLayoutBundles {
			return nil, nil, fmt.Errorf("more than %d sigstore bundles", maxLayoutBundles)
		}
		blob, err := readBeneath(dir, imgspecv1.ImageBlobsDir+"/"+layer.Digest.Algorithm().String()+"/"+layer.Digest.Encoded(), maxLayoutBundleSize)
		if err != nil {
			return nil, nil, fmt.Errorf("bundle referrer %s: %w", d, err)
		}
		if int64(len(blob)) != layer.Size || layer.Digest.Algorithm().FromBytes(blob) != layer.Digest {
			return nil, nil, fmt.Errorf("bundle referrer %s: bundle blob %s does not match its descriptor", d, layer.Digest)
		}
		out[m.Subject.Digest] = append(out[m.Subject.Digest], layoutBundle{subject: m.Subject.Digest, bundle: blob})
	}
	return out, refs, nil
}

// importBundles are the archive's bundles for signed (signedManifest)
// or, when that is e's own manifest, the index it was chosen from, as
// they will be kept, and those index digests.
func (a *openedArchive) importBundles(e *importEntry, signed digest.Digest) ([]keptBundle, []digest.Digest) {
	var kept []keptBundle
	var subjects []digest.Digest
	now := time.Now().UTC()
	candidates := []digest.Digest{signed}
	if signed == e.m.Digest && e.indexDigest != "" {
		candidates = append(candidates, e.indexDigest)
	}
	for _, subject := range candidates {
		for _, b := range a.bundles[subject] {
			kept = append(kept, keptBundle{Manifest: signed, Subject: subject,
				Repository: archiveBundleRepository(e.sources[0]), Source: archiveBundleSource, Bundle: b.bundle, Found: now})
			if subject != signed && !slices.Contains(subjects, subject) {
				subjects = append(subjects, subject)
			}
		}
	}
	return kept, subjects
}

// archiveBundleRepository is keptBundle.Repository for bundles that
// travelled with an archive: "<transport>:<path>". A bundle names no
// repository and no file, so, as with a registry's, it vouches for the
// image only as the source it came with: the create-time check uses it
// for that archive's identities, never for a registry name or another
// archive. A Docker repository name has no ':', so the two never meet.
func archiveBundleRepository(src *ImportSource) string {
	return src.Transport + ":" + src.Path
}

// verifyArchiveBundles is the create-time check of an imported identity
// with the bundles kept from its archive, once verifyAs (the library's
// signatures and kept sets) refused it with rej. No bundle: rej stands.
func (s *Service) verifyArchiveBundles(ctx context.Context, img *Image, d digest.Digest, ref *importRef, pol *policy.Policy, rej error) error {
	bundles, subjects := s.storedBundles(img, d, archiveBundleRepository(ref.src))
	if len(bundles) == 0 {
		return rej
	}
	sref, err := istorage.Transport.NewStoreReference(s.store, nil, img.StorageID())
	if err != nil {
		return fmt.Errorf("verify %s: %w", img.ID, err)
	}
	src, err := sref.NewImageSource(ctx, s.systemContext())
	if err != nil {
		return fmt.Errorf("verify %s: %w", img.ID, err)
	}
	defer src.Close()
	checked := &asIdentity{UnparsedImage: image.UnparsedInstance(src, &d), ref: ref, subjects: subjects,
		bundles: func(context.Context) ([][]byte, error) { return bundles, nil }}
	return pol.Check(ctx, checked)
}

// exportSignatures is what an OCI layout export carries beside the image
// written as manifest d: the sigstore signatures of d (the library's set
// and the kept ones, GPG signatures left out: a layout has no place for
// them), and the kept bundles whose subject is d.
type exportSignatures struct {
	sigstore [][]byte // the library's blobs: "\x00sigstore-json\n" + JSON
	bundles  [][]byte
}

func (s *Service) exportSignaturesOf(id string, d digest.Digest) exportSignatures {
	var out exportSignatures
	sets := s.keptSignatures(id)
	if set := s.librarySignatures(id, d); set != nil {
		sets = append(sets, set)
	}
	prefix := []byte("\x00sigstore-json\n")
	for _, set := range sets {
		if set.Manifest != d {
			continue
		}
		off := 0
		for _, n := range set.Sizes {
			if n < 0 || off+n > len(set.Blob) {
				s.log.Warn("not exporting corrupt kept signatures", "image", id, "manifest", d.String())
				break
			}
			sig := set.Blob[off : off+n]
			off += n
			if bytes.HasPrefix(sig, prefix) && !slices.ContainsFunc(out.sigstore, func(b []byte) bool { return bytes.Equal(b, sig) }) {
				out.sigstore = append(out.sigstore, sig)
			}
		}
	}
	if len(out.sigstore) > maxAttachmentLayers {
		// Import refuses more; the newest are the last.
		out.sigstore = out.sigstore[len(out.sigstore)-maxAttachmentLayers:]
	}
	for _, b := range s.keptBundles(id) {
		if b.Manifest == d && b.Subject == d && !slices.ContainsFunc(out.bundles, func(o []byte) bool { return bytes.Equal(o, b.Bundle) }) {
			out.bundles = append(out.bundles, b.Bundle)
		}
	}
	if len(out.bundles) > maxLayoutBundles {
		out.bundles = out.bundles[len(out.bundles)-maxLayoutBundles:]
	}
	return out
}

// writeExportSignatures adds to the exported layout dir, whose image
// manifest is written, the signatures and bundles of the image's stored
// manifest. The store keeps layers uncompressed, so the written manifest
// (recompressed layers) is rarely the stored one they sign: the stored
// manifest is then written too, as a blob beside them, and Import
// verifies them against it and admits the written image as the same
// image when both name the same config (signedManifest).
func (s *Service) writeExportSignatures(ctx context.Context, img *Image, ref types.ImageReference, dir string, written []byte) (exportSignatures, error) {
	orig := img.Record.manifestDigest()
	if orig == "" {
		return exportSignatures{}, nil
	}
	sigs := s.exportSignaturesOf(img.StorageID(), orig)
	if len(sigs.sigstore) == 0 && len(sigs.bundles) == 0 {
		return sigs, nil
	}
	src, err := ref.NewImageSource(ctx, s.systemContext())
	if err != nil {
		return sigs, err
	}
	defer src.Close()
	blob, mime, err := src.GetManifest(ctx, &orig)
	if err != nil {
		return sigs, err
	}
	if digest.FromBytes(blob) != orig {
		return sigs, fmt.Errorf("stored manifest %s: digest mismatch", orig)
	}
	if digest.FromBytes(written) != orig {
		p := filepath.Join(dir, imgspecv1.ImageBlobsDir, orig.Algorithm().String(), orig.Encoded())
		if err := os.WriteFile(p, blob, 0o644); err != nil {
			return sigs, err
		}
	}
	return sigs, writeLayoutSignatures(dir, orig, mime, int64(len(blob)), sigs)
}

// signedManifest is the manifest of entry e that the layout's signatures
// and bundles are for, and its content: e's own when any is for it;
// else a manifest blob of the layout they are for that names the same
// config as e (an export whose layers were recompressed, see
// writeExportSignatures). The config digest pins the uncompressed layer
// digests (rootfs.diff_ids), which the store enforces when it stores the
// layers, so that manifest vouches for the very image e stores. "": none.
func (a *openedArchive) signedManifest(e *importEntry) (digest.Digest, []byte, error) {
	if a.sigs[e.m.Digest] != nil || len(a.bundles[e.m.Digest]) > 0 || (e.indexDigest != "" && len(a.bundles[e.indexDigest]) > 0) {
		return e.m.Digest, nil, nil
	}
	if a.dir == "" {
		return "", nil, nil
	}
	var subjects []digest.Digest
	for d := range a.sigs {
		subjects = append(subjects, d)
	}
	for d := range a.bundles {
		if !slices.Contains(subjects, d) {
			subjects = append(subjects, d)
		}
	}
	slices.Sort(subjects) // the same answer on every import
	for _, d := range subjects {
		data, err := readBeneath(a.dir, imgspecv1.ImageBlobsDir+"/"+d.Algorithm().String()+"/"+d.Encoded(), maxManifestSize)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		if d.Algorithm().FromBytes(data) != d {
			return "", nil, fmt.Errorf("manifest %s: digest mismatch", d)
		}
		m, err := validateManifest(data, manifest.GuessMIMEType(data))
		if err != nil || m.List != nil || m.Config.Digest != e.m.Config.Digest {
			continue
		}
		return d, data, nil
	}
	return "", nil, nil
}

// checkSignedManifest evaluates pol for ref with the manifest blob, the
// attachment's signatures set (nil: none) and the bundles: laid out as a
// dir: image, which the library reads with its own signature parser.
func (s *Service) checkSignedManifest(ctx context.Context, blob []byte, set *signatureSet, bundles [][]byte, subjects []digest.Digest, ref types.ImageReference, pol *policy.Policy) error {
	dir, err := os.MkdirTemp(filepath.Join(s.cfg.Root, "tmp"), "verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), blob, 0o600); err != nil {
		return err
	}
	if set != nil {
		off := 0
		for i, n := range set.Sizes {
			if n < 0 || off+n > len(set.Blob) {
				return fmt.Errorf("signatures of %s: corrupt sizes", set.Manifest)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("signature-%d", i+1)), set.Blob[off:off+n], 0o600); err != nil {
				return err
			}
			off += n
		}
	}
	dref, err := directory.NewReference(dir)
	if err != nil {
		return err
	}
	src, err := dref.NewImageSource(ctx, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	return pol.Check(ctx, &asIdentity{UnparsedImage: image.UnparsedInstance(src, nil), ref: ref, subjects: subjects,
		bundles: func(context.Context) ([][]byte, error) { return bundles, nil }})
}

// writeLayoutSignatures adds sigs of the manifest d (of mediaType mime and
// size bytes) to the OCI layout dir: the sigstore signatures as one
// attachment tagged "sha256-<hex>.sig", each bundle as a referrer, all
// listed in index.json, the shape Import reads.
func writeLayoutSignatures(dir string, d digest.Digest, mime string, size int64, sigs exportSignatures) error {
	index, err := readLayoutIndex(dir)
	if err != nil {
		return err
	}
	putBlob := func(data []byte) (digest.Digest, error) {
		bd := digest.FromBytes(data)
		p := filepath.Join(dir, imgspecv1.ImageBlobsDir, bd.Algorithm().String(), bd.Encoded())
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		return bd, os.WriteFile(p, data, 0o644)
	}
	emptyDesc := imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeEmptyJSON, Digest: digest.FromBytes(emptyJSON), Size: int64(len(emptyJSON))}
	if _, err := putBlob(emptyJSON); err != nil {
		return err
	}
	putManifest := func(m imgspecv1.Manifest, ann map[string]string) error {
		m.SchemaVersion = 2
		m.MediaType = imgspecv1.MediaTypeImageManifest
		data, err := json.Marshal(m)
		if err != nil {
			return err
		}
		md, err := putBlob(data)
		if err != nil {
			return err
		}
		index.Manifests = append(index.Manifests, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest,
			ArtifactType: m.ArtifactType, Digest: md, Size: int64(len(data)), Annotations: ann})
		return nil
	}
	if len(sigs.sigstore) > 0 {
		var layers []imgspecv1.Descriptor
		for _, sig := range sigs.sigstore {
			var chunk struct {
				MIMEType    string            `json:"mimeType"`
				Payload     []byte            `json:"payload"`
				Annotations map[string]string `json:"annotations"`
			}
			if err := json.Unmarshal(sig[len("\x00sigstore-json\n"):], &chunk); err != nil {
				return fmt.Errorf("sigstore signature of %s: %w", d, err)
			}
			pd, err := putBlob(chunk.Payload)
			if err != nil {
				return err
			}
			layers = append(layers, imgspecv1.Descriptor{MediaType: chunk.MIMEType, Digest: pd, Size: int64(len(chunk.Payload)), Annotations: chunk.Annotations})
		}
		tag := "sha256-" + d.Encoded() + ".sig"
		if err := putManifest(imgspecv1.Manifest{Config: emptyDesc, Layers: layers},
			map[string]string{imgspecv1.AnnotationRefName: tag}); err != nil {
			return err
		}
	}
	subject := &imgspecv1.Descriptor{MediaType: mime, Digest: d, Size: size}
	for _, b := range sigs.bundles {
		bd, err := putBlob(b)
		if err != nil {
			return err
		}
		if err := putManifest(imgspecv1.Manifest{ArtifactType: referrers.BundleMediaType, Config: emptyDesc, Subject: subject,
			Layers: []imgspecv1.Descriptor{{MediaType: referrers.BundleMediaType, Digest: bd, Size: int64(len(b))}}}, nil); err != nil {
			return err
		}
	}
	data, err := json.Marshal(index)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, imgspecv1.ImageIndexFile), data, 0o644)
}

// tarLayout writes the layout dir as an oci-archive into f, names
// relative to dir, as the library's oci-archive transport does.
func tarLayout(dir string, f *os.File) error {
	tw := tar.NewWriter(f)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		_, err = io.Copy(tw, in)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Sync()
}
