package image

import (
	"context"
	"fmt"

	"github.com/crivet/crivet/policy"
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
	if img.Record == nil || img.Record.ManifestDigest == "" {
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
	dref, err := docker.NewReference(identity)
	if err != nil {
		return fmt.Errorf("verify %s: %w", img.ID, err)
	}
	d := img.Record.ManifestDigest
	return pol.Check(ctx, &asIdentity{UnparsedImage: image.UnparsedInstance(src, &d), ref: dref})
}

// asIdentity presents a locally stored image under the registry
// reference it is being admitted as. The policy picks its scope and
// matches signedIdentity by Reference(); everything else (manifest,
// signatures, including sigstore ones reachable only through the embedded
// value's unexported-type methods) comes from the store.
type asIdentity struct {
	*image.UnparsedImage
	ref types.ImageReference
}

func (a *asIdentity) Reference() types.ImageReference { return a.ref }
