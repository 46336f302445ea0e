package image

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/crivet/crivet/image/record"
	"github.com/crivet/crivet/image/referrers"
	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
)

// bundlesKey is the big-data item of a storage image that holds the
// Sigstore bundles (cosign v3 signatures) found for it at pull, so the
// create-time check verifies them offline, as it does legacy signatures.
const bundlesKey = "crivet-bundles"

// bundleDiscoveryTimeout bounds the search for one image's bundles.
const bundleDiscoveryTimeout = time.Minute

// maxKeptBundles bounds the item; the oldest bundles go first.
const maxKeptBundles = 64

type keptBundle = record.KeptBundle

// bundleSet is what a pull found: loaded once, used by the policy check
// and kept with the image.
type bundleSet struct {
	done    bool
	err     error
	bundles []keptBundle
}

// findBundles discovers the bundles of the pulled manifest and of the
// index it was chosen from, once per job. An error is a registry that
// failed, never "no bundle".
func (j *pullJob) findBundles(ctx context.Context, r *resolved) ([]keptBundle, error) {
	if j.bundles.done {
		return j.bundles.bundles, j.bundles.err
	}
	j.bundles.done = true
	// A registry that stalls on its referrers holds the pull at most this
	// long (the pull's progress watchdog does not cover discovery).
	ctx, cancel := context.WithTimeout(ctx, bundleDiscoveryTimeout)
	defer cancel()
	subjects := []digest.Digest{r.m.Digest}
	if r.indexDigest != "" {
		subjects = append(subjects, r.indexDigest)
	}
	now := time.Now().UTC()
	for _, subject := range subjects {
		found, err := referrers.Find(ctx, j.sys, j.named, subject)
		if err != nil {
			j.bundles.err = err
			return nil, err
		}
		for _, f := range found {
			j.bundles.bundles = append(j.bundles.bundles, keptBundle{Manifest: r.m.Digest, Subject: subject,
				Repository: j.named.Name(), Source: f.Source, Bundle: f.Bundle, Found: now})
		}
	}
	return j.bundles.bundles, nil
}

func bundleBytes(kept []keptBundle) [][]byte {
	out := make([][]byte, len(kept))
	for i := range kept {
		out[i] = kept[i].Bundle
	}
	return out
}

// keptBundles reads the bundles kept with image id.
func (s *Service) keptBundles(id string) []keptBundle {
	data, err := s.store.ImageBigData(id, bundlesKey)
	if err != nil {
		return nil
	}
	var out []keptBundle
	if err := json.Unmarshal(data, &out); err != nil {
		s.log.Warn("ignoring corrupt kept bundles", "image", id, "error", err)
		return nil
	}
	return out
}

// keepBundles adds found to the image's kept bundles. Callers hold the
// image's lock.
func (s *Service) keepBundles(id string, found []keptBundle) {
	if len(found) == 0 {
		return
	}
	kept := s.keptBundles(id)
	added := false
	for i := range found {
		if !slices.ContainsFunc(kept, func(k keptBundle) bool { return k.Same(&found[i]) }) {
			kept = append(kept, found[i])
			added = true
		}
	}
	if !added {
		return
	}
	if len(kept) > maxKeptBundles {
		kept = kept[len(kept)-maxKeptBundles:]
	}
	data, err := json.Marshal(kept)
	if err == nil {
		err = s.store.SetImageBigData(id, bundlesKey, data, nil)
	}
	if err != nil {
		s.log.Warn("could not keep the image's sigstore bundles", "image", id, "error", err)
	}
}

// storedBundles are the kept bundles that vouch for manifest as an image
// of repository, and the index digests their subjects may name.
func (s *Service) storedBundles(img *Image, manifest digest.Digest, repository string) ([][]byte, []digest.Digest) {
	out, _, subjects := usableBundles(s.keptBundles(img.StorageID()), manifest, repository)
	return out, subjects
}

// usableBundles are the bundles of kept (an image's kept bundles) that
// vouch for manifest as an image of repository, their positions in kept
// (for a check's report), and the index digests their subjects may name.
func usableBundles(kept []keptBundle, manifest digest.Digest, repository string) ([][]byte, []int, []digest.Digest) {
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
func unusable(b *keptBundle, manifest digest.Digest, repository string) string {
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
func reportStoredBundles(ctx context.Context, rep *bundleReport, kept []keptBundle, used []int, manifest digest.Digest, identity reference.Named) context.Context {
	notUsed := map[int]string{}
	for i := range kept {
		if why := unusable(&kept[i], manifest, identity.Name()); why != "" {
			notUsed[i] = why
		}
	}
	return policy.WithBundleObserver(ctx, rep.observer(rep.add(identity.String(), kept, notUsed), used))
}
