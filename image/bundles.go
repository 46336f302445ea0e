package image

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/crivet/crivet/image/record"
	"github.com/crivet/crivet/image/referrers"
	"github.com/opencontainers/go-digest"
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
