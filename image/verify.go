package image

import (
	"context"
	"errors"
	"fmt"

	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
)

// VerifyStored evaluates pol for a stored image as if it were the image
// named identity in its registry, using only local data: the manifest and
// the signatures kept at pull time. No registry is contacted.
func (s *Service) VerifyStored(ctx context.Context, img *Image, identity reference.Named, pol *policy.Policy) error {
	dref, err := docker.NewReference(identity)
	if err != nil {
		return fmt.Errorf("verify %s: %w", img.ID, err)
	}
	return s.verifyAs(ctx, img, img.Record.VerifiedManifest(), dref, pol)
}

// verifyAs is VerifyStored for the stored manifest d presented as ref: a
// registry reference, or the archive an image was imported from.
func (s *Service) verifyAs(ctx context.Context, img *Image, d digest.Digest, ref types.ImageReference, pol *policy.Policy) error {
	if d == "" {
		return fmt.Errorf("verify %s: no verified manifest recorded", img.ID)
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
	unparsed := image.UnparsedInstance(src, &d)
	checked := &asIdentity{UnparsedImage: unparsed, ref: ref}
	checkCtx := ctx // carries a check's bundle observer, for this Check only
	if dref, ok := ref.(interface{ DockerReference() reference.Named }); ok && ref.Transport().Name() == "docker" && dref.DockerReference() != nil {
		// Bundles found in this very repository only (bundles.go).
		kept := s.keptBundles(img.StorageID())
		bundles, used, subjects := usableBundles(kept, d, dref.DockerReference().Name())
		checked.bundles = func(context.Context) ([][]byte, error) { return bundles, nil }
		checked.subjects = subjects
		if rep := reportFrom(ctx); rep != nil {
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
	for _, set := range s.keptSignatures(img.StorageID()) {
		if set.Manifest != d {
			continue
		}
		if manifestBlob == nil {
			if manifestBlob, _, err = unparsed.Manifest(ctx); err != nil {
				return fmt.Errorf("verify %s: %w", img.ID, err)
			}
		}
		kerr := s.verifyKept(ctx, manifestBlob, set, ref, pol)
		if kerr == nil {
			return nil
		}
		if !errors.As(kerr, new(*policy.Rejection)) {
			s.log.Warn("could not verify kept signatures", "image", img.ID, "source", set.Source, "error", kerr)
		}
	}
	return rej
}

// asIdentity presents a locally stored image under the reference it is
// being admitted as (a registry's, or an archive's). The policy picks its scope and
// matches signedIdentity by Reference(); everything else (manifest,
// signatures, including sigstore ones reachable only through the embedded
// value's unexported-type methods) comes from the store.
type asIdentity struct {
	*image.UnparsedImage
	ref types.ImageReference
	// bundles reads the Sigstore bundles the policy may decide on (found
	// in the registry at pull, kept with the image at create); nil: none.
	bundles  func(context.Context) ([][]byte, error)
	subjects []digest.Digest
}

func (a *asIdentity) Reference() types.ImageReference { return a.ref }

// SigstoreBundles and BundleSubjects make asIdentity a policy.BundleSource.
func (a *asIdentity) SigstoreBundles(ctx context.Context) ([][]byte, error) {
	if a.bundles == nil {
		return nil, nil
	}
	return a.bundles(ctx)
}

func (a *asIdentity) BundleSubjects() []digest.Digest { return a.subjects }
