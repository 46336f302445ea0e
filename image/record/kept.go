package record

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// SignatureSet is one manifest's signatures as the library stores them:
// its own blob format (which this package need not understand), and the
// size of each signature in it.
type SignatureSet struct {
	Manifest digest.Digest `json:"manifest"`
	// Source is the reference the set was pulled with, when known.
	Source string    `json:"source,omitempty"`
	Sizes  []int     `json:"sizes"`
	Blob   []byte    `json:"blob"`
	Kept   time.Time `json:"kept"`
}

// Digest identifies the set's content (what a reference pins).
func (a *SignatureSet) Digest() digest.Digest {
	h := digest.SHA256.Digester()
	fmt.Fprintf(h.Hash(), "%s\x00%v\x00", a.Manifest, a.Sizes)
	h.Hash().Write(a.Blob)
	return h.Digest()
}

// Same: a and b hold the same signatures for the same manifest.
func (a *SignatureSet) Same(b *SignatureSet) bool {
	return a.Manifest == b.Manifest && slices.Equal(a.Sizes, b.Sizes) && bytes.Equal(a.Blob, b.Blob)
}

// KeptBundle is one Sigstore bundle as found at pull (or import).
type KeptBundle struct {
	// Manifest is the per-platform manifest the pull verified; Subject
	// the digest the bundle was found for (that manifest, or its index).
	Manifest digest.Digest `json:"manifest"`
	Subject  digest.Digest `json:"subject"`
	// Repository is the repository the image was pulled from (its mirrors
	// answer for it). A bundle names no repository, so it vouches for the
	// image only as an image of this repository: the create-time check
	// uses it for an identity in the same repository, never for a copy
	// pulled from elsewhere.
	Repository string    `json:"repository"`
	Source     string    `json:"source"` // referrers-api or tag-schema
	Bundle     []byte    `json:"bundle"`
	Found      time.Time `json:"found"`
}

// Same: b and o are the same bundle, found for the same manifest in the
// same repository.
func (b *KeptBundle) Same(o *KeptBundle) bool {
	return b.Manifest == o.Manifest && b.Repository == o.Repository && digest.FromBytes(b.Bundle) == digest.FromBytes(o.Bundle)
}
