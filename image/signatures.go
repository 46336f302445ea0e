package image

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/crivet/crivet/image/record"
	"github.com/opencontainers/go-digest"
)

// keptSignaturesKey is the big-data item of a storage image that holds
// the signature sets a later pull of the same image displaced. The library
// keeps one set per manifest and replaces it on every copy; a namespace
// admitted through the first source's signatures would otherwise lose them
// when the same bytes are pulled from a second source.
const keptSignaturesKey = "crivet-signatures"

// maxKeptSignatureSets bounds the item: the oldest sets that no
// admission is pinned to go first (a variable for tests).
var maxKeptSignatureSets = 32

type signatureSet = record.SignatureSet

// librarySignatures reads the set the library stored for the manifest
// inst of image id; nil when there is no image or no signature.
func (s *Service) librarySignatures(id string, inst digest.Digest) *signatureSet {
	img, err := s.store.Image(id)
	if err != nil || inst.Validate() != nil {
		return nil
	}
	// The layout of go.podman.io/image/v5/storage: per-manifest sizes in
	// the image metadata, the concatenated blobs in "signature-<hex>".
	var md struct {
		SignaturesSizes map[digest.Digest][]int `json:"signatures-sizes"`
	}
	if json.Unmarshal([]byte(img.Metadata), &md) != nil {
		return nil
	}
	sizes := md.SignaturesSizes[inst]
	if len(sizes) == 0 {
		return nil
	}
	blob, err := s.store.ImageBigData(id, "signature-"+inst.Encoded())
	if err != nil {
		return nil
	}
	set := &signatureSet{Manifest: inst, Sizes: sizes, Blob: blob}
	if rec, err := s.record(id); err == nil && len(rec.References) > 0 {
		set.Source = rec.References[len(rec.References)-1].Resolved
	}
	return set
}

// librarySignatureSets reads every set the library stored for image id,
// by manifest: a copy of one manifest rewrites the image's metadata, and
// the sets of its other manifests can go with it.
func (s *Service) librarySignatureSets(id string) map[digest.Digest]*signatureSet {
	img, err := s.store.Image(id)
	if err != nil {
		return nil
	}
	var md struct {
		SignaturesSizes map[digest.Digest][]int `json:"signatures-sizes"`
	}
	if json.Unmarshal([]byte(img.Metadata), &md) != nil {
		return nil
	}
	out := map[digest.Digest]*signatureSet{}
	for m := range md.SignaturesSizes {
		if set := s.librarySignatures(id, m); set != nil {
			out[m] = set
		}
	}
	return out
}

// keepDisplacedSets is keepDisplacedSignatures for every set read before
// a copy.
func (s *Service) keepDisplacedSets(id string, prev map[digest.Digest]*signatureSet) {
	for m, set := range prev {
		s.keepDisplacedSignatures(id, m, set)
	}
}

func (s *Service) keptSignatures(id string) []*signatureSet {
	data, err := s.store.ImageBigData(id, keptSignaturesKey)
	if err != nil {
		return nil
	}
	var sets []*signatureSet
	if err := json.Unmarshal(data, &sets); err != nil {
		s.log.Warn("ignoring corrupt kept signatures", "image", id, "error", err)
		return nil
	}
	return sets
}

// keepDisplacedSignatures saves prev, the set stored before this pull,
// if the pull replaced it. Callers hold the image's lock.
func (s *Service) keepDisplacedSignatures(id string, inst digest.Digest, prev *signatureSet) {
	if prev == nil {
		return
	}
	if cur := s.librarySignatures(id, inst); cur != nil && cur.Same(prev) {
		return
	}
	if s.keepSignatureSet(id, prev) {
		s.log.Info("kept signatures displaced by a new pull", "image", id, "manifest", inst.String(), "source", prev.Source, "signatures", len(prev.Sizes))
	}
}

// keepSignatureSet adds set to the image's kept sets, unless it is there;
// it reports whether it added it. Callers hold the image's lock.
func (s *Service) keepSignatureSet(id string, set *signatureSet) bool {
	sets := s.keptSignatures(id)
	if slices.ContainsFunc(sets, set.Same) {
		return false
	}
	set.Kept = time.Now().UTC()
	sets = append(sets, set)
	var pins map[digest.Digest]bool
	if rec, err := s.record(id); err == nil {
		pins = rec.PinnedSignatures()
	}
	sets = evictSignatureSets(sets, pins, maxKeptSignatureSets)
	data, err := json.Marshal(sets)
	if err == nil {
		err = s.store.SetImageBigData(id, keptSignaturesKey, data, nil)
	}
	if err != nil {
		s.log.Warn("could not keep the image's signatures", "image", id, "source", set.Source, "error", err)
		return false
	}
	return true
}

// evictSignatureSets drops the oldest sets beyond max that no recorded
// reference was admitted with; a pinned set is never dropped, so the
// bound applies to the unpinned ones.
func evictSignatureSets(sets []*signatureSet, pins map[digest.Digest]bool, max int) []*signatureSet {
	over := len(sets) - max
	if over <= 0 {
		return sets
	}
	out := make([]*signatureSet, 0, len(sets))
	for _, set := range sets { // oldest first
		if over > 0 && !pins[set.Digest()] {
			over--
			continue
		}
		out = append(out, set)
	}
	return out
}
