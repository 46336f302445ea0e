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
	"github.com/crivet/crivet/image/trust"
	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
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

// layoutReferrers is what readLayoutBundles finds.
type layoutReferrers struct {
	// bundles and gpg are the Sigstore bundles and the GPG signatures
	// (crivet's export, gpgSignatureArtifactType), by subject.
	bundles map[digest.Digest][]layoutBundle
	gpg     map[digest.Digest][][]byte
	// refs are the artifact manifests that have a subject (these and
	// other referrers): not images to import.
	refs map[digest.Digest]bool
}

// readLayoutBundles finds every bundle referrer and GPG signature
// referrer among the layout's blobs (which include those index.json
// lists). A referrer whose content is missing, too large or does not match
// its digest makes the archive unusable, as a bad attachment does.
func readLayoutBundles(dir string) (*layoutReferrers, error) {
	byAlg := filepath.Join(dir, imgspecv1.ImageBlobsDir, digest.SHA256.String())
	entries, err := os.ReadDir(byAlg)
	lr := &layoutReferrers{bundles: map[digest.Digest][]layoutBundle{}, gpg: map[digest.Digest][][]byte{}, refs: map[digest.Digest]bool{}}
	if errors.Is(err, os.ErrNotExist) {
		return lr, nil
	}
	if err != nil {
		return nil, err
	}
	n, gpgN := 0, 0
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
			return nil, err
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
			return nil, fmt.Errorf("referrer %s: digest mismatch", d)
		}
		// An artifact about another manifest (a bundle, an SBOM, …) is
		// not an image to import, even when index.json lists it.
		lr.refs[d] = true
		if m.ArtifactType != referrers.BundleMediaType && m.ArtifactType != gpgSignatureArtifactType {
			continue
		}
		if err := m.Subject.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("referrer %s: subject: %w", d, err)
		}
		if m.ArtifactType == gpgSignatureArtifactType {
			for _, l := range m.Layers {
				if gpgN++; gpgN > maxAttachmentLayers {
					return nil, fmt.Errorf("more than %d GPG signatures", maxAttachmentLayers)
				}
				sig, err := readLayoutBlob(dir, l, maxLayoutBundleSize)
				if err != nil {
					return nil, fmt.Errorf("GPG signature referrer %s: %w", d, err)
				}
				// The library reads a blob starting with a zero byte as
				// another format: a GPG message never does.
				if len(sig) == 0 || sig[0] == 0 {
					return nil, fmt.Errorf("GPG signature referrer %s: layer %s is no OpenPGP message", d, l.Digest)
				}
				lr.gpg[m.Subject.Digest] = append(lr.gpg[m.Subject.Digest], sig)
			}
			continue
		}
		var layer *imgspecv1.Descriptor
		for i := range m.Layers {
			if m.Layers[i].MediaType == referrers.BundleMediaType {
				if layer != nil {
					return nil, fmt.Errorf("bundle referrer %s: more than one bundle layer", d)
				}
				layer = &m.Layers[i]
			}
		}
		if layer == nil {
			return nil, fmt.Errorf("bundle referrer %s: no layer of media type %s", d, referrers.BundleMediaType)
		}
		if err := layer.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("bundle referrer %s: layer: %w", d, err)
		}
		if layer.Size < 0 || layer.Size > maxLayoutBundleSize {
			return nil, fmt.Errorf("bundle referrer %s: bundle of %d bytes, more than %d", d, layer.Size, maxLayoutBundleSize)
		}
		if n++; n > maxLayoutBundles {
			return nil, fmt.Errorf("more than %d sigstore bundles", maxLayoutBundles)
		}
		blob, err := readBeneath(dir, imgspecv1.ImageBlobsDir+"/"+layer.Digest.Algorithm().String()+"/"+layer.Digest.Encoded(), maxLayoutBundleSize)
		if err != nil {
			return nil, fmt.Errorf("bundle referrer %s: %w", d, err)
		}
		if int64(len(blob)) != layer.Size || layer.Digest.Algorithm().FromBytes(blob) != layer.Digest {
			return nil, fmt.Errorf("bundle referrer %s: bundle blob %s does not match its descriptor", d, layer.Digest)
		}
		lr.bundles[m.Subject.Digest] = append(lr.bundles[m.Subject.Digest], layoutBundle{subject: m.Subject.Digest, bundle: blob})
	}
	return lr, nil
}

// readLayoutBlob reads the blob desc names from the layout dir, at most
// limit bytes, checked against the descriptor's size and digest.
func readLayoutBlob(dir string, desc imgspecv1.Descriptor, limit int64) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, err
	}
	if desc.Size < 0 || desc.Size > limit {
		return nil, fmt.Errorf("blob %s of %d bytes, more than %d", desc.Digest, desc.Size, limit)
	}
	data, err := readBeneath(dir, imgspecv1.ImageBlobsDir+"/"+desc.Digest.Algorithm().String()+"/"+desc.Digest.Encoded(), limit)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != desc.Size || desc.Digest.Algorithm().FromBytes(data) != desc.Digest {
		return nil, fmt.Errorf("blob %s does not match its descriptor", desc.Digest)
	}
	return data, nil
}

// importBundles are the archive's bundles for signed (signedManifest),
// for the index e was chosen from when signed is e's own manifest, and
// for any index the layout holds that lists signed (an export writes the
// index a pull chose the manifest from beside it), as they will be kept,
// and those index digests.
func (a *openedArchive) importBundles(e *importEntry, signed digest.Digest) ([]keptBundle, []digest.Digest) {
	var kept []keptBundle
	var subjects []digest.Digest
	now := time.Now().UTC()
	candidates := []digest.Digest{signed}
	if signed == e.m.Digest && e.indexDigest != "" {
		candidates = append(candidates, e.indexDigest)
	}
	for _, d := range a.indexesListing(signed) {
		if !slices.Contains(candidates, d) {
			candidates = append(candidates, d)
		}
	}
	for _, subject := range candidates {
		for _, b := range a.bundles[subject] {
			kept = append(kept, keptBundle{Manifest: signed, Subject: subject,
				Repository: trust.ArchiveBundleRepository(e.sources[0]), Source: archiveBundleSource, Bundle: b.bundle, Found: now})
			if subject != signed && !slices.Contains(subjects, subject) {
				subjects = append(subjects, subject)
			}
		}
	}
	return kept, subjects
}

// layoutIndex is the layout's blob d when it is an image index whose
// content matches d; nil otherwise (absent, unreadable, not an index).
func (a *openedArchive) layoutIndex(d digest.Digest) manifest.List {
	if a.dir == "" || d.Validate() != nil {
		return nil
	}
	data, err := readBeneath(a.dir, imgspecv1.ImageBlobsDir+"/"+d.Algorithm().String()+"/"+d.Encoded(), maxManifestSize)
	if err != nil || d.Algorithm().FromBytes(data) != d {
		return nil
	}
	m, err := validateManifest(data, manifest.GuessMIMEType(data))
	if err != nil {
		return nil
	}
	return m.List
}

// indexesListing are the bundle subjects that are indexes of the layout
// listing manifest d, sorted. The index's digest is what its bundles
// sign, and the index names d by digest, so such a bundle vouches for d
// as a pull's bundle of the index it chose d from does.
func (a *openedArchive) indexesListing(d digest.Digest) []digest.Digest {
	var out []digest.Digest
	for subject := range a.bundles {
		if l := a.layoutIndex(subject); l != nil && slices.Contains(l.Instances(), d) {
			out = append(out, subject)
		}
	}
	slices.Sort(out)
	return out
}

// gpgSignatureArtifactType is the artifact type of the referrer that
// carries a manifest's GPG (simple signing) signatures in an OCI layout,
// one layer each, as the library stores them. No standard places them in
// a layout (cosign's attachment holds sigstore payloads, which a GPG
// signature is not), so crivet names its own type; other tools see an
// unknown referrer and leave it alone.
const gpgSignatureArtifactType = "application/vnd.crivet.simple-signing.v1+gpg"

// exportSignatures is what an OCI layout export carries beside the image
// written as manifest d: the signatures of d (the library's set and the
// kept ones), sigstore and GPG apart, and the kept bundles whose subject
// is d or the index d was chosen from (with that index's manifest, which
// the layout must hold for the bundle to be checked).
type exportSignatures struct {
	sigstore [][]byte // the library's blobs: "\x00sigstore-json\n" + JSON
	gpg      [][]byte // the library's blobs of simple signing: the OpenPGP message
	bundles  []exportBundle
}

// exportBundle is one bundle and the manifest its statement names.
type exportBundle struct {
	subject digest.Digest
	bundle  []byte
}

func (s *Service) exportSignaturesOf(id string, d digest.Digest) exportSignatures {
	var out exportSignatures
	sets := s.keptSignatures(id)
	if set := s.librarySignatures(id, d); set != nil {
		sets = append(sets, set)
	}
	prefix := []byte("\x00sigstore-json\n")
	add := func(list [][]byte, sig []byte) [][]byte {
		if slices.ContainsFunc(list, func(b []byte) bool { return bytes.Equal(b, sig) }) {
			return list
		}
		return append(list, sig)
	}
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
			switch {
			case bytes.HasPrefix(sig, prefix):
				out.sigstore = add(out.sigstore, sig)
			case len(sig) > 0 && sig[0] != 0:
				// The library's blob of a simple signing signature is the
				// signature itself; other formats start with a zero byte.
				out.gpg = add(out.gpg, sig)
			}
		}
	}
	// Import refuses more than this many; the newest are the last.
	if len(out.sigstore) > maxAttachmentLayers {
		out.sigstore = out.sigstore[len(out.sigstore)-maxAttachmentLayers:]
	}
	if len(out.gpg) > maxAttachmentLayers {
		out.gpg = out.gpg[len(out.gpg)-maxAttachmentLayers:]
	}
	for _, b := range s.keptBundles(id) {
		if b.Manifest == d && !slices.ContainsFunc(out.bundles, func(o exportBundle) bool { return bytes.Equal(o.bundle, b.Bundle) }) {
			out.bundles = append(out.bundles, exportBundle{subject: b.Subject, bundle: b.Bundle})
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
	orig := img.Record.VerifiedManifest()
	if orig == "" {
		return exportSignatures{}, nil
	}
	sigs := s.exportSignaturesOf(img.StorageID(), orig)
	if len(sigs.sigstore) == 0 && len(sigs.gpg) == 0 && len(sigs.bundles) == 0 {
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
		if err := writeLayoutBlob(dir, blob); err != nil {
			return sigs, err
		}
	}
	// A bundle whose subject is the index the manifest was chosen from
	// needs that index in the layout: the store keeps it beside the image
	// (the library saves the top-level manifest of a pull). It is written
	// as a blob only, not listed in index.json, so it is no image to
	// import; import checks it lists the manifest before using the bundle.
	subjects := map[digest.Digest]imgspecv1.Descriptor{orig: {MediaType: mime, Digest: orig, Size: int64(len(blob))}}
	kept := sigs.bundles[:0]
	for _, b := range sigs.bundles {
		if _, ok := subjects[b.subject]; !ok {
			desc, err := writeIndexBlob(ctx, src, dir, b.subject, orig)
			if err != nil {
				s.log.Warn("not exporting a sigstore bundle of the image's index", "image", img.ID, "index", b.subject.String(), "error", err)
				continue
			}
			subjects[b.subject] = desc
		}
		kept = append(kept, b)
	}
	sigs.bundles = kept
	return sigs, writeLayoutSignatures(dir, subjects, orig, sigs)
}

// writeIndexBlob writes the stored index d, which must list manifest, as
// a blob of the layout dir, and returns its descriptor.
func writeIndexBlob(ctx context.Context, src types.ImageSource, dir string, d, manifestDigest digest.Digest) (imgspecv1.Descriptor, error) {
	blob, mime, err := src.GetManifest(ctx, &d)
	if err != nil {
		return imgspecv1.Descriptor{}, err
	}
	if digest.FromBytes(blob) != d {
		return imgspecv1.Descriptor{}, fmt.Errorf("stored index %s: digest mismatch", d)
	}
	m, err := validateManifest(blob, mime)
	if err != nil {
		return imgspecv1.Descriptor{}, err
	}
	if m.List == nil || !slices.Contains(m.List.Instances(), manifestDigest) {
		return imgspecv1.Descriptor{}, fmt.Errorf("%s is not an index listing %s", d, manifestDigest)
	}
	return imgspecv1.Descriptor{MediaType: mime, Digest: d, Size: int64(len(blob))}, writeLayoutBlob(dir, blob)
}

// writeLayoutBlob stores data as a blob of the layout dir.
func writeLayoutBlob(dir string, data []byte) error {
	d := digest.FromBytes(data)
	p := filepath.Join(dir, imgspecv1.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// signedManifest is the manifest of entry e that the layout's signatures
// and bundles are for, and its content: e's own when any is for it;
// else a manifest blob of the layout they are for that names the same
// config as e (an export whose layers were recompressed, see
// writeExportSignatures). The config digest pins the uncompressed layer
// digests (rootfs.diff_ids), which the store enforces when it stores the
// layers, so that manifest vouches for the very image e stores. "": none.
func (a *openedArchive) signedManifest(e *importEntry) (digest.Digest, []byte, error) {
	if a.sigs[e.m.Digest] != nil || len(a.bundles[e.m.Digest]) > 0 || (e.indexDigest != "" && len(a.bundles[e.indexDigest]) > 0) ||
		len(a.indexesListing(e.m.Digest)) > 0 {
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
		// A bundle of an index vouches for the manifests it lists.
		if l := a.layoutIndex(d); l != nil {
			for _, inst := range l.Instances() {
				if !slices.Contains(subjects, inst) {
					subjects = append(subjects, inst)
				}
			}
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

// writeLayoutSignatures adds sigs to the OCI layout dir, all listed in
// index.json, the shape Import reads: the sigstore signatures as one
// attachment tagged "sha256-<hex>.sig", the GPG signatures as one
// referrer of gpgSignatureArtifactType, each bundle as a referrer of its
// subject. subjects describes every manifest they name, the first (the
// signed manifest) as subjects[sigs' manifest]; d is that manifest.
func writeLayoutSignatures(dir string, subjects map[digest.Digest]imgspecv1.Descriptor, d digest.Digest, sigs exportSignatures) error {
	index, err := readLayoutIndex(dir)
	if err != nil {
		return err
	}
	putBlob := func(data []byte) (digest.Digest, error) {
		return digest.FromBytes(data), writeLayoutBlob(dir, data)
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
	signed := subjects[d]
	if len(sigs.gpg) > 0 {
		var layers []imgspecv1.Descriptor
		for _, sig := range sigs.gpg {
			sd, err := putBlob(sig)
			if err != nil {
				return err
			}
			layers = append(layers, imgspecv1.Descriptor{MediaType: gpgSignatureArtifactType, Digest: sd, Size: int64(len(sig))})
		}
		if err := putManifest(imgspecv1.Manifest{ArtifactType: gpgSignatureArtifactType, Config: emptyDesc, Subject: &signed, Layers: layers}, nil); err != nil {
			return err
		}
	}
	for _, b := range sigs.bundles {
		subject, ok := subjects[b.subject]
		if !ok {
			return fmt.Errorf("bundle for %s: no such manifest in the layout", b.subject)
		}
		bd, err := putBlob(b.bundle)
		if err != nil {
			return err
		}
		if err := putManifest(imgspecv1.Manifest{ArtifactType: referrers.BundleMediaType, Config: emptyDesc, Subject: &subject,
			Layers: []imgspecv1.Descriptor{{MediaType: referrers.BundleMediaType, Digest: bd, Size: int64(len(b.bundle))}}}, nil); err != nil {
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
