package image

import (
	"fmt"
	"slices"
	"strings"

	"github.com/crivet/crivet/image/trust"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/storage"
)

// resolve is the one lookup (the identity rule: image/trust/identity.go;
// this file is the lookup, that one what a found image is verified as).
// Order: an image ID; each pull candidate of the name, first as a recorded
// reference, then as a stored name; last, a bare hex prefix of at least 12
// digits (the short ID operators copy from crictl images).
func (s *Service) resolve(ref string) (*trust.Found, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidReference)
	}
	hexs, hasAlgo := strings.CutPrefix(ref, "sha256:")
	if isHexID(hexs) || (hasAlgo && isHex(hexs)) {
		img, err := s.byIDPrefix(hexs)
		if err != nil {
			return nil, fmt.Errorf("image %q: %w", ref, err)
		}
		return s.foundByID(img)
	}
	shortID := func() (*trust.Found, bool) {
		if isHex(ref) && len(ref) >= 12 {
			if img, err := s.byIDPrefix(ref); err == nil {
				if f, err := s.foundByID(img); err == nil {
					return f, true
				}
			}
		}
		return nil, false
	}
	cands, err := s.candidates(s.systemContext(), ref)
	if err != nil {
		if f, ok := shortID(); ok {
			return f, nil
		}
		return nil, err
	}
	imgs, err := s.store.Images()
	if err != nil {
		return nil, fmt.Errorf("image %q: list images: %w", ref, err)
	}
	for _, c := range cands {
		c = trust.StripTagIfDigested(c)
		if f := s.findRecorded(imgs, c); f != nil {
			return f, nil
		}
		if f := s.findStored(imgs, c); f != nil {
			return f, nil
		}
	}
	if f, ok := shortID(); ok {
		return f, nil
	}
	return nil, fmt.Errorf("image %q: %w", ref, ErrNotFound)
}

func (s *Service) foundByID(img *storage.Image) (*trust.Found, error) {
	rec, err := s.recordOf(img)
	if err != nil {
		return nil, err
	}
	return &trust.Found{Img: img, How: trust.ByID, Rec: rec}, nil
}

// findRecorded finds the image with current references for c.
func (s *Service) findRecorded(imgs []storage.Image, c reference.Named) *trust.Found {
	for i := range imgs {
		rec, err := s.recordOf(&imgs[i])
		if err != nil {
			continue
		}
		if refs := referencesFor(rec, c); len(refs) > 0 {
			return &trust.Found{Img: &imgs[i], How: trust.ByReference, Name: c, Rec: rec, Refs: refs}
		}
	}
	return nil
}

// findStored finds the image the store itself names c: a tag in its
// names, or a digest of its manifests under one of its repositories.
func (s *Service) findStored(imgs []storage.Image, c reference.Named) *trust.Found {
	d, digested := c.(reference.Digested)
	for i := range imgs {
		img := &imgs[i]
		switch {
		case digested:
			if !hasRepo(img, c.Name()) || (img.Digest != d.Digest() && !slices.Contains(img.Digests, d.Digest())) {
				continue
			}
		case !slices.Contains(img.Names, c.String()):
			continue
		}
		rec, err := s.recordOf(img)
		if err != nil {
			continue
		}
		return &trust.Found{Img: img, How: trust.ByStoreName, Name: c, Rec: rec}
	}
	return nil
}

// referencesFor are rec's current references that c names: the same
// repository and tag, or the same repository and a digest recorded for
// that reference (its manifest, or the index it was chosen from).
func referencesFor(rec *Record, c reference.Named) []Reference {
	d, digested := c.(reference.Digested)
	tagged, isTagged := c.(reference.Tagged)
	var out []Reference
	for _, r := range rec.References {
		if r.Formerly {
			continue
		}
		rn, err := reference.ParseNormalizedNamed(r.Resolved)
		if err != nil || rn.Name() != c.Name() {
			continue
		}
		switch {
		case digested:
			if d.Digest() != r.ManifestFor(rec) && d.Digest() != r.IndexFor(rec) {
				continue
			}
		case isTagged:
			t, ok := reference.TagNameOnly(rn).(reference.Tagged)
			if _, dig := rn.(reference.Digested); dig || !ok || t.Tag() != tagged.Tag() {
				continue
			}
		default:
			continue
		}
		out = append(out, r)
	}
	// Most recent first: the latest pull or import of the name is tried first.
	slices.Reverse(out)
	return out
}
