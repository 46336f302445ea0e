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
	"slices"
	"strings"
	"testing"

	"github.com/crivet/crivet/image/referrers"
	"github.com/crivet/crivet/test/fixtures"
	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// onlyOCIArchive requires req for every oci-archive and rejects the rest.
func onlyOCIArchive(req string) string {
	return fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"oci-archive":{"":[%s]}}}`, req)
}

func (e *env) mustExport(ref, path string) {
	e.t.Helper()
	if _, err := e.svc.Export(context.Background(), ExportRequest{Image: ref, Path: path, Format: FormatOCIArchive}); err != nil {
		e.t.Fatalf("export %s: %v", ref, err)
	}
}

// An image pulled with a cosign v3 bundle, exported to an oci-archive,
// removed and imported again on an air-gapped node is admitted by a
// sigstoreBundle requirement for the oci-archive transport, at import and
// offline at create; another key is refused at create, and so are an
// archive without the bundle and one whose bundle signs another digest.
func TestExportImportRoundTripReverifiesSigstoreBundles(t *testing.T) {
	e := bundleEnv(t, true)
	key, other := fixtures.NewBundleKey(t), fixtures.NewBundleKey(t)
	e.setNamespace("pull", anyDocker(bundleReq(key.PublicKeyPath)))
	signed := fixtures.PushImage(t, e.ref("team/signed:1"), 1024, fixtures.WithOCI())
	key.Sign(t, signed.DigestRef())
	pulled := e.mustPull(signed.Ref, "pull")

	// Pulled without a bundle (the default policy accepts anything), then
	// given one that signs another image: a bundle for another digest.
	misdirected := fixtures.PushImage(t, e.ref("team/misdirected:1"), 1024, fixtures.WithOCI())
	mimg := e.mustPull(misdirected.Ref, "")
	md := digest.Digest(misdirected.ManifestDigest)
	e.svc.keepBundles(mimg.StorageID(), []keptBundle{{Manifest: md, Subject: md, Repository: misdirected.Repo(),
		Bundle: key.Bundle(t, signed.ManifestDigest, fixtures.CosignSignPredicateType)}})
	unsigned := fixtures.PushImage(t, e.ref("team/unsigned:1"), 1024, fixtures.WithOCI())

	signedTar := filepath.Join(e.dir, "signed.tar")
	misdirectedTar := filepath.Join(e.dir, "misdirected.tar")
	unsignedTar := filepath.Join(e.dir, "unsigned.tar")
	e.mustExport(signed.Ref, signedTar)
	e.mustExport(misdirected.Ref, misdirectedTar)
	fixtures.SaveOCIArchive(t, unsigned.Ref, unsignedTar, unsigned.Ref, false)
	for _, ref := range []string{signed.Ref, misdirected.Ref} {
		if err := e.svc.Remove(ref); err != nil {
			t.Fatal(err)
		}
	}
	e.reg.Stop() // air-gapped from here on

	e.setGlobal(onlyOCIArchive(bundleReq(key.PublicKeyPath)))
	before := storeState(t, e)
	_, err := e.importFile(unsignedTar, "", "")
	wantRejected(t, err, "archive without a bundle", "no sigstore bundle exists")
	_, err = e.importFile(misdirectedTar, "", "")
	wantRejected(t, err, "archive whose bundle signs another digest", "digest_mismatch")
	if after := storeState(t, e); after != before {
		t.Fatalf("refused imports changed the store:\n%s\n%s", before, after)
	}

	img := e.mustImport(signedTar, "")
	if img.ID != pulled.ID {
		t.Fatalf("imported %s, exported %s", img.ID, pulled.ID)
	}
	kept := e.svc.keptBundles(img.StorageID())
	if len(kept) != 1 || kept[0].Repository != "oci-archive:"+signedTar || kept[0].Source != archiveBundleSource {
		t.Fatalf("kept bundles after import: %+v", kept)
	}
	e.setNamespace("strict", onlyOCIArchive(bundleReq(key.PublicKeyPath)))
	e.setNamespace("other", onlyOCIArchive(bundleReq(other.PublicKeyPath)))
	// A namespace trusting the key for the registry does not trust the
	// archive's bundle: it vouches for the archive only.
	e.setNamespace("registry", anyDocker(bundleReq(key.PublicKeyPath)))
	a, err := e.admit(img, signed.Ref, "strict")
	if err != nil || a.Identity != "oci-archive:"+signedTar+":"+signed.Ref {
		t.Fatalf("create-time check of the imported bundle-signed image: %+v %v", a, err)
	}
	_, err = e.admit(img, signed.Ref, "other")
	wantRejected(t, err, "another key at create", "none of 1 sigstore bundles was accepted")
	if _, err := e.admit(img, signed.Ref, "registry"); err == nil {
		t.Fatal("an archive's bundle admitted the image as the registry's")
	}

	// The same export as an OCI layout directory whose index.json lists
	// no referrer (as oras copies one: the referrer is only a blob) is
	// admitted for the oci transport; with its bundle blob altered it is
	// an unusable archive.
	if err := e.svc.Remove(img.ID); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(e.dir, "layout")
	untarLayout(t, signedTar, layout)
	var index imgspecv1.Index
	if err := json.Unmarshal(readFile(t, filepath.Join(layout, "index.json")), &index); err != nil {
		t.Fatal(err)
	}
	var bundleBlob string
	index.Manifests = slices.DeleteFunc(index.Manifests, func(d imgspecv1.Descriptor) bool {
		if d.ArtifactType != referrers.BundleMediaType {
			return false
		}
		var m imgspecv1.Manifest
		if err := json.Unmarshal(readFile(t, filepath.Join(layout, "blobs/sha256", d.Digest.Encoded())), &m); err != nil {
			t.Fatal(err)
		}
		bundleBlob = filepath.Join(layout, "blobs/sha256", m.Layers[0].Digest.Encoded())
		return true
	})
	data, _ := json.Marshal(index)
	writeFile(t, filepath.Join(layout, "index.json"), string(data))
	if bundleBlob == "" {
		t.Fatal("the export has no bundle referrer in index.json")
	}
	e.setGlobal(fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"oci":{"":[%s]}}}`, bundleReq(key.PublicKeyPath)))
	if got := e.mustImport(layout, ""); got.ID != pulled.ID {
		t.Fatalf("layout import: %s", got.ID)
	}
	if err := e.svc.Remove(pulled.ID); err != nil {
		t.Fatal(err)
	}
	bundle := readFile(t, bundleBlob)
	writeFile(t, bundleBlob, string(bundle[:len(bundle)-1])+" ")
	if _, err := e.importFile(layout, "", ""); !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), "does not match its descriptor") {
		t.Fatalf("layout with an altered bundle: %v", err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// untarLayout unpacks the oci-archive at path (regular files only) into dir.
func untarLayout(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A legacy sigstore signature (cosign v2's attachment) kept at pull goes
// out with an oci-archive export and is verified again at import and at
// create, offline.
func TestExportImportRoundTripReverifiesSigstoreSignatures(t *testing.T) {
	e := newEnv(t)
	key, other := fixtures.NewSigstoreKey(t), fixtures.NewSigstoreKey(t)
	signed := fixtures.PushImage(t, e.ref("app/legacy:1"), 1024, fixtures.WithOCI())
	key.Sign(t, signed.Ref)
	e.setNamespace("pull", anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	pulled := e.mustPull(signed.Ref, "pull")
	archive := filepath.Join(e.dir, "legacy.tar")
	e.mustExport(signed.Ref, archive)
	if err := e.svc.Remove(signed.Ref); err != nil {
		t.Fatal(err)
	}
	e.reg.Stop()

	sigPolicy := func(pub string) string {
		return onlyOCIArchive(keyReq(pub, fmt.Sprintf(`{"type":"exactReference","dockerReference":%q}`, signed.Ref)))
	}
	e.setGlobal(sigPolicy(key.PublicKeyPath))
	img := e.mustImport(archive, "")
	if img.ID != pulled.ID {
		t.Fatalf("imported %s, exported %s", img.ID, pulled.ID)
	}
	e.setNamespace("strict", sigPolicy(key.PublicKeyPath))
	e.setNamespace("other", sigPolicy(other.PublicKeyPath))
	if _, err := e.admit(img, signed.Ref, "strict"); err != nil {
		t.Fatalf("create-time check of the imported signed image: %v", err)
	}
	if _, err := e.admit(img, signed.Ref, "other"); err == nil {
		t.Fatal("admitted under another key")
	}
}

// A GPG (simple signing) signature fetched at pull goes out with an
// oci-archive export (as a referrer of crivet's own artifact type) and is
// verified again at import and at create, offline; another key is refused.
func TestExportImportRoundTripReverifiesGPGSignatures(t *testing.T) {
	e := newEnv(t)
	g, other := fixtures.NewGPGKey(t), fixtures.NewGPGKey(t)
	signed := fixtures.PushImage(t, e.ref("app/gpg:1"), 1024, fixtures.WithOCI())
	g.Sign(t, signed.Ref, e.lookaside)
	e.setNamespace("pull", anyDocker(gpgReq(g.PublicKeyPath)))
	pulled := e.mustPull(signed.Ref, "pull")
	archive := filepath.Join(e.dir, "gpg.tar")
	e.mustExport(signed.Ref, archive)
	if err := e.svc.Remove(signed.Ref); err != nil {
		t.Fatal(err)
	}
	e.reg.Stop()

	gpgPolicy := func(pub string) string {
		return onlyOCIArchive(fmt.Sprintf(`{"type":"signedBy","keyType":"GPGKeys","keyPath":%q,"signedIdentity":{"type":"exactReference","dockerReference":%q}}`,
			pub, signed.Ref))
	}
	e.setGlobal(gpgPolicy(other.PublicKeyPath))
	_, err := e.importFile(archive, "", "")
	wantRejected(t, err, "import under another GPG key", "")
	e.setGlobal(gpgPolicy(g.PublicKeyPath))
	img := e.mustImport(archive, "")
	if img.ID != pulled.ID {
		t.Fatalf("imported %s, exported %s", img.ID, pulled.ID)
	}
	e.setNamespace("strict", gpgPolicy(g.PublicKeyPath))
	e.setNamespace("other", gpgPolicy(other.PublicKeyPath))
	if _, err := e.admit(img, signed.Ref, "strict"); err != nil {
		t.Fatalf("create-time check of the imported GPG-signed image: %v", err)
	}
	_, err = e.admit(img, signed.Ref, "other")
	wantRejected(t, err, "create under another GPG key", "")
}

// A multi-arch image whose bundle signs the index: the pull keeps the
// bundle for the platform manifest it chose, the export writes the index
// (a blob, not an image to import) and the bundle as its referrer, and
// import admits the platform image because the exported index lists it;
// the create-time check re-verifies it offline. A layout whose index no
// longer lists the image does not vouch for it.
func TestExportImportRoundTripReverifiesIndexBundles(t *testing.T) {
	e := bundleEnv(t, true)
	ca := fixtures.NewBundleCA(t)
	req := keylessBundleReq(ca.TrustedRootPath, fixtures.ReleaseWorkflow, fixtures.GitHubIssuer, "")
	e.setNamespace("pull", anyDocker(req))
	ref := e.ref("team/multi:1")
	indexDigest, _ := fixtures.PushIndexWithOptions(t, ref, []string{"linux/amd64", "linux/arm64"}, 1024, fixtures.WithOCI())
	ca.Sign(t, e.ref("team/multi@"+indexDigest), fixtures.WorkflowIdentity, fixtures.BundleEvidence{TLog: true})
	pulled := e.mustPull(ref, "pull")
	archive := filepath.Join(e.dir, "multi.tar")
	e.mustExport(ref, archive)
	if err := e.svc.Remove(ref); err != nil {
		t.Fatal(err)
	}
	e.reg.Stop()

	layout := filepath.Join(e.dir, "layout")
	untarLayout(t, archive, layout)
	if _, err := os.Stat(filepath.Join(layout, "blobs/sha256", digest.Digest(indexDigest).Encoded())); err != nil {
		t.Fatalf("the export lacks the index its bundle signs: %v", err)
	}

	e.setGlobal(onlyOCIArchive(req))
	img := e.mustImport(archive, "")
	if img.ID != pulled.ID {
		t.Fatalf("imported %s, exported %s", img.ID, pulled.ID)
	}
	kept := e.svc.keptBundles(img.StorageID())
	if len(kept) != 1 || kept[0].Subject.String() != indexDigest || kept[0].Manifest != pulled.Record.ManifestDigest {
		t.Fatalf("kept bundles after import: %+v", kept)
	}
	e.setNamespace("strict", onlyOCIArchive(req))
	e.setNamespace("other", onlyOCIArchive(keylessBundleReq(ca.TrustedRootPath, fixtures.DeveloperEmail, fixtures.GoogleIssuer, "")))
	if _, err := e.admit(img, ref, "strict"); err != nil {
		t.Fatalf("create-time check of the imported index-signed image: %v", err)
	}
	_, err := e.admit(img, ref, "other")
	wantRejected(t, err, "create under another identity", "keyless_claims")

	// The index blob gone (the bundle's subject dangling): the bundle
	// vouches for nothing in the layout. Altered to list only the other
	// platform: the layout is unusable.
	if err := e.svc.Remove(img.ID); err != nil {
		t.Fatal(err)
	}
	indexPath := filepath.Join(layout, "blobs/sha256", digest.Digest(indexDigest).Encoded())
	indexBlob := readFile(t, indexPath)
	if err := os.Remove(indexPath); err != nil {
		t.Fatal(err)
	}
	e.setGlobal(fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"oci":{"":[%s]}}}`, req))
	_, err = e.importFile(layout, "", "")
	wantRejected(t, err, "layout without the index the bundle signs", "no sigstore bundle exists")

	var idx imgspecv1.Index
	if err := json.Unmarshal(indexBlob, &idx); err != nil {
		t.Fatal(err)
	}
	idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d imgspecv1.Descriptor) bool { return d.Digest == pulled.Record.ManifestDigest })
	data, _ := json.Marshal(idx)
	writeFile(t, indexPath, string(data))
	if _, err := e.importFile(layout, "", ""); !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("layout with an altered index: %v", err)
	}
}

// What an operator carries to an air-gapped node when the image was
// signed with cosign v3's defaults: `cosign save` of the signed image,
// imported under a policy that requires the bundle for the oci transport,
// admitted at import and offline at create; another key refuses it.
func TestCosignSaveLayoutImportsWithItsBundle(t *testing.T) {
	cosign := fixtures.NewCosignKey(t) // skips when cosign is not built
	other := fixtures.NewBundleKey(t)
	for _, withAPI := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", withAPI), func(t *testing.T) {
			e := bundleEnv(t, withAPI)
			signed := fixtures.PushImage(t, e.ref("team/saved:1"), 1024, fixtures.WithOCI())
			cosign.Sign(t, signed.DigestRef())
			layout := filepath.Join(e.dir, "saved")
			cosign.Save(t, signed.DigestRef(), layout)
			e.reg.Stop() // air-gapped from here on

			e.setGlobal(fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"oci":{"":[%s]}}}`, bundleReq(other.PublicKeyPath)))
			before := storeState(t, e)
			_, err := e.importFile(layout, "", signed.Ref)
			wantRejected(t, err, "cosign save layout under another key", "sigstore bundles was accepted")
			if after := storeState(t, e); after != before {
				t.Fatalf("a refused import changed the store:\n%s\n%s", before, after)
			}

			e.setGlobal(fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"oci":{"":[%s]}}}`, bundleReq(cosign.PublicKey)))
			img := e.mustImport(layout, signed.Ref)
			e.setNamespace("strict", fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"oci":{"":[%s]}}}`, bundleReq(cosign.PublicKey)))
			e.svc.trust.ForgetAdmissions()
			if _, err := e.admit(img, signed.Ref, "strict"); err != nil {
				t.Fatalf("create-time check of the imported cosign save layout: %v", err)
			}
		})
	}
}
