package trust

import (
	"context"
	"fmt"
	"slices"

	"github.com/crivet/crivet/image/record"
	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
)

// BundleBytes are the bundles of kept, as the policy reads them.
func BundleBytes(kept []record.KeptBundle) [][]byte {
	out := make([][]byte, len(kept))
	for i := range kept {
		out[i] = kept[i].Bundle
	}
	return out
}

// storedBundles are the kept bundles that vouch for manifest as an image
// of repository, and the index digests their subjects may name.
func (v *Verifier) storedBundles(img *record.Image, manifest digest.Digest, repository string) ([][]byte, []digest.Digest) {
	out, _, subjects := usableBundles(v.store.KeptBundles(img.StorageID()), manifest, repository)
	return out, subjects
}

// usableBundles are the bundles of kept (an image's kept bundles) that
// vouch for manifest as an image of repository, their positions in kept
// (for a check's report), and the index digests their subjects may name.
func usableBundles(kept []record.KeptBundle, manifest digest.Digest, repository string) ([][]byte, []int, []digest.Digest) {
	var out [][]byte
	var used []int
	var subjects []digest.Digest
	for i := range kept {
		b := &kept[i]
		if unusable(b, manifest, repository) != "" {
			continue
		}
		out = append(out, b.Bundle)
		used = append(used, i)
		if b.Subject != manifest && !slices.Contains(subjects, b.Subject) {
			subjects = append(subjects, b.Subject)
		}
	}
	return out, used, subjects
}

// unusable says why kept bundle b cannot vouch for manifest as an image of
// repository; "" when it can.
func unusable(b *record.KeptBundle, manifest digest.Digest, repository string) string {
	// The repository first: for a copy pulled from another repository it
	// is the reason that matters, whatever its manifest.
	switch {
	case b.Repository != repository:
		return fmt.Sprintf("found in repository %s: a bundle vouches only for images of the repository it was found in, not %s", b.Repository, repository)
	case b.Manifest != manifest:
		return fmt.Sprintf("found for manifest %s, not %s", b.Manifest, manifest)
	}
	return ""
}

// reportStoredBundles lists, for a check, every bundle of kept as
// considered for manifest verified as identity (those usableBundles left
// out, used lists the others, with the reason) and returns the context
// that records the policy's verdicts on the used ones.
func reportStoredBundles(ctx context.Context, rep *Report, kept []record.KeptBundle, used []int, manifest digest.Digest, identity reference.Named) context.Context {
	notUsed := map[int]string{}
	for i := range kept {
		if why := unusable(&kept[i], manifest, identity.Name()); why != "" {
			notUsed[i] = why
		}
	}
	return policy.WithBundleObserver(ctx, rep.Observer(rep.Add(identity.String(), kept, notUsed), used))
}
