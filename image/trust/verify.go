package trust

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/crivet/crivet/image/record"
	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/types"
)

// VerifyStored evaluates pol for a stored image as if it were the image
// named identity in its registry, using only local data: the manifest and
// the signatures kept at pull time. No registry is contacted.
func (v *Verifier) VerifyStored(ctx context.Context, img *record.Image, identity reference.Named, pol *policy.Policy) error {
	dref, err := docker.NewReference(identity)
	if err != nil {
		return fmt.Errorf("verify %s: %w", img.ID, err)
	}
	return v.verifyAs(ctx, img, img.Record.VerifiedManifest(), dref, pol)
}

// verifyAs is VerifyStored for the stored manifest d presented as ref: a
// registry reference, or the archive an image was imported from.
func (v *Verifier) verifyAs(ctx context.Context, img *record.Image, d digest.Digest, ref types.ImageReference, pol *policy.Policy) error {
	if d == "" {
		return fmt.Errorf("verify %s: no verified manifest recorded", img.ID)
	}
	src, err := v.store.ImageSource(ctx, img.StorageID())
	if err != nil {
		return fmt.Errorf("verify %s: %w", img.ID, err)
	}
	defer src.Close()
	unparsed := image.UnparsedInstance(src, &d)
	checked := &AsIdentity{UnparsedImage: unparsed, Ref: ref}
	checkCtx := ctx // carries a check's bundle observer, for this Check only
	if dref, ok := ref.(interface{ DockerReference() reference.Named }); ok && ref.Transport().Name() == "docker" && dref.DockerReference() != nil {
		// Bundles found in this very repository only (bundles.go).
		kept := v.store.KeptBundles(img.StorageID())
		bundles, used, subjects := usableBundles(kept, d, dref.DockerReference().Name())
		checked.Bundles = func(context.Context) ([][]byte, error) { return bundles, nil }
		checked.Subjects = subjects
		if rep := ReportFrom(ctx); rep != nil {
			checkCtx = reportStoredBundles(ctx, rep, kept, used, d, dref.DockerReference())
		}
	}
	err = pol.Check(checkCtx, checked)
	var rej *policy.Rejection
	if err == nil || !errors.As(err, &rej) {
		return err
	}
	// The library's set is the latest pull's; sets displaced by it still
	// vouch for the same manifest. Any one that verifies admits the image.
	var manifestBlob []byte
	for _, set := range v.store.KeptSignatures(img.StorageID()) {
		if set.Manifest != d {
			continue
		}
		if manifestBlob == nil {
			if manifestBlob, _, err = unparsed.Manifest(ctx); err != nil {
				return fmt.Errorf("verify %s: %w", img.ID, err)
			}
		}
		// The kept set instead of the library's, read by the library's
		// own signature parser.
		kerr := v.checkLaidOut(ctx, manifestBlob, set, "kept signatures", &AsIdentity{Ref: ref}, pol)
		if kerr == nil {
			return nil
		}
		if !errors.As(kerr, new(*policy.Rejection)) {
			v.log.Warn("could not verify kept signatures", "image", img.ID, "source", set.Source, "error", kerr)
		}
	}
	return rej
}

// AsIdentity presents a locally stored image under the reference it is
// being admitted as (a registry's, or an archive's). The policy picks its scope and
// matches signedIdentity by Reference(); everything else (manifest,
// signatures, including sigstore ones reachable only through the embedded
// value's unexported-type methods) comes from the store.
type AsIdentity struct {
	*image.UnparsedImage
	Ref types.ImageReference
	// Bundles reads the Sigstore bundles the policy may decide on (found
	// in the registry at pull, kept with the image at create); nil: none.
	Bundles func(context.Context) ([][]byte, error)
	// Subjects are the index digests a bundle's statement may sign
	// instead of the manifest.
	Subjects []digest.Digest
}

func (a *AsIdentity) Reference() types.ImageReference { return a.Ref }

// SigstoreBundles and BundleSubjects make AsIdentity a policy.BundleSource.
func (a *AsIdentity) SigstoreBundles(ctx context.Context) ([][]byte, error) {
	if a.Bundles == nil {
		return nil, nil
	}
	return a.Bundles(ctx)
}

func (a *AsIdentity) BundleSubjects() []digest.Digest { return a.Subjects }

// checkLaidOut evaluates pol for as with the manifest blob and set's
// signatures (nil: none) laid out as a dir: image in a temporary
// directory; what names the set in an error.
func (v *Verifier) checkLaidOut(ctx context.Context, blob []byte, set *record.SignatureSet, what string, as *AsIdentity, pol *policy.Policy) error {
	dir, err := os.MkdirTemp(v.cfg.TempDir, "verify-")
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
				return fmt.Errorf("%s of %s: corrupt sizes", what, set.Manifest)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("signature-%d", i+1)), set.Blob[off:off+n], 0o600); err != nil {
				return err
			}
			off += n
		}
	}
	ref, err := directory.NewReference(dir)
	if err != nil {
		return err
	}
	src, err := ref.NewImageSource(ctx, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	checked := *as
	checked.UnparsedImage = image.UnparsedInstance(src, nil)
	return pol.Check(ctx, &checked)
}

// ArchiveBundleRepository is KeptBundle.Repository for bundles that
// travelled with an archive: "<transport>:<path>". A bundle names no
// repository and no file, so, as with a registry's, it vouches for the
// image only as the source it came with: the create-time check uses it
// for that archive's identities, never for a registry name or another
// archive. A Docker repository name has no ':', so the two never meet.
func ArchiveBundleRepository(src *record.ImportSource) string {
	return src.Transport + ":" + src.Path
}

// verifyArchiveBundles is the create-time check of an imported identity
// with the bundles kept from its archive, once verifyAs (the library's
// signatures and kept sets) refused it with rej. No bundle: rej stands.
func (v *Verifier) verifyArchiveBundles(ctx context.Context, img *record.Image, d digest.Digest, ref *ImportRef, pol *policy.Policy, rej error) error {
	bundles, subjects := v.storedBundles(img, d, ArchiveBundleRepository(ref.Source()))
	if len(bundles) == 0 {
		return rej
	}
	src, err := v.store.ImageSource(ctx, img.StorageID())
	if err != nil {
		return fmt.Errorf("verify %s: %w", img.ID, err)
	}
	defer src.Close()
	checked := &AsIdentity{UnparsedImage: image.UnparsedInstance(src, &d), Ref: ref, Subjects: subjects,
		Bundles: func(context.Context) ([][]byte, error) { return bundles, nil }}
	return pol.Check(ctx, checked)
}

// CheckSignedManifest evaluates pol for ref with the manifest blob, the
// attachment's signatures set (nil: none) and the bundles: laid out as a
// dir: image, which the library reads with its own signature parser.
func (v *Verifier) CheckSignedManifest(ctx context.Context, blob []byte, set *record.SignatureSet, bundles [][]byte, subjects []digest.Digest, ref types.ImageReference, pol *policy.Policy) error {
	return v.checkLaidOut(ctx, blob, set, "signatures", &AsIdentity{Ref: ref, Subjects: subjects,
		Bundles: func(context.Context) ([][]byte, error) { return bundles, nil }}, pol)
}
