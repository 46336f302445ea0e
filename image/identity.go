package image

import (
	"fmt"
	"slices"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/storage"
)

// The identity rule. One function, resolve, turns a client's reference
// into an image for every caller (ImageStatus, RemoveImage, CreateContainer's
// image, user_specified_image and image volumes, crivet policy check), and it
// says how it found the image. The create-time check verifies exactly that:
//
//   - A name is resolved the way a pull resolves it (registries.conf
//     aliases and unqualified-search registries, else docker.io), giving
//     fully qualified candidates in the pull's order. The first candidate
//     that the store knows decides, and the image is verified as that very
//     candidate and as nothing else, under each piece of provenance the
//     record holds for it: pulled from its registry (verified with the
//     manifest and signatures that pull stored), or imported from an archive
//     (verified as that archive). A name the store carries but no record
//     explains (stored by another tool, or a digest no pull or import of
//     that name recorded) finds the image and admits nothing.
//   - An image ID (full, "sha256:" prefixed, or a unique prefix) says
//     nothing about where the image came from: it is verified as every
//     piece of provenance its record holds, including names that have since
//     moved to another image ("formerly"). An image with none is refused.
//
// There is no second normalisation, no fallback to a guessed name and no
// synthetic name.

// match says how a reference found an image.
type match int

const (
	byReference match = iota // a name the image is recorded as pulled or imported under
	byStoreName              // a name the store carries that no record explains
	byID                     // the image's ID, full or a unique prefix
)

func (m match) String() string {
	switch m {
	case byReference:
		return "recorded reference"
	case byStoreName:
		return "stored name without provenance"
	}
	return "image ID"
}

// found is the answer of resolve.
type found struct {
	img *storage.Image
	how match
	// name is the qualified candidate that found the image (a name match).
	name reference.Named
	// rec is the image's record as read by the lookup; refs are its current
	// references for name (byReference only).
	rec  *Record
	refs []Reference
}

// resolve is the one lookup (see the identity rule above). Order: an
// image ID; each pull candidate of the name, first as a recorded
// reference, then as a stored name; last, a bare hex prefix of at least 12
// digits (the short ID operators copy from crictl images).
func (s *Service) resolve(ref string) (*found, error) {
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
	shortID := func() (*found, bool) {
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
		c = stripTagIfDigested(c)
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

func (s *Service) foundByID(img *storage.Image) (*found, error) {
	rec, err := s.recordOf(img)
	if err != nil {
		return nil, err
	}
	return &found{img: img, how: byID, rec: rec}, nil
}

// findRecorded finds the image with current references for c.
func (s *Service) findRecorded(imgs []storage.Image, c reference.Named) *found {
	for i := range imgs {
		rec, err := s.recordOf(&imgs[i])
		if err != nil {
			continue
		}
		if refs := referencesFor(rec, c); len(refs) > 0 {
			return &found{img: &imgs[i], how: byReference, name: c, rec: rec, refs: refs}
		}
	}
	return nil
}

// findStored finds the image the store itself names c: a tag in its
// names, or a digest of its manifests under one of its repositories.
func (s *Service) findStored(imgs []storage.Image, c reference.Named) *found {
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
		return &found{img: img, how: byStoreName, name: c, rec: rec}
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

// identities is what the found image is verified as, under the rule.
func (f *found) identities() []identity {
	switch f.how {
	case byReference:
		return identitiesOf(f.rec, f.refs, f.name)
	case byID:
		return recordedIdentities(f.rec)
	}
	return nil
}

// identitiesOf turns references into identities: a pull is verified as
// name (the reference that found it) with the manifest that pull stored;
// an import as its archive. Duplicates are dropped.
func identitiesOf(rec *Record, refs []Reference, name reference.Named) []identity {
	var out []identity
	seen := map[string]bool{}
	for _, r := range refs {
		var id identity
		if r.Import != nil {
			id = importIdentity(r.Import)
		} else {
			n := name
			if n == nil {
				parsed, err := reference.ParseNormalizedNamed(r.Resolved)
				if err != nil {
					continue
				}
				n = stripTagIfDigested(reference.TagNameOnly(parsed))
			}
			var ok bool
			if id, ok = dockerIdentity(n); !ok {
				continue
			}
			id.manifest = r.ManifestFor(rec)
		}
		key := id.ref.Transport().Name() + ":" + id.name + "\x00" + string(id.manifest)
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, id)
	}
	return out
}

// recordedIdentities: every piece of provenance the record holds, the
// current ones most recent first, then the former ones.
func recordedIdentities(rec *Record) []identity {
	if rec == nil {
		return nil
	}
	refs := slices.Clone(rec.References)
	slices.Reverse(refs)
	slices.SortStableFunc(refs, func(a, b Reference) int {
		switch {
		case a.Formerly == b.Formerly:
			return 0
		case b.Formerly:
			return -1
		}
		return 1
	})
	return identitiesOf(rec, refs, nil)
}

// errNoProvenance explains a found image that the rule admits as nothing.
func errNoProvenance(f *found, userRef string) error {
	if f.how == byStoreName {
		return fmt.Errorf("image sha256:%s is stored as %s, but no pull or import of it under that name is recorded, so there is nothing to verify it as (reference %q)", f.img.ID, f.name, userRef)
	}
	return fmt.Errorf("image sha256:%s has no recorded provenance (no pull or import of it is recorded), so there is nothing to verify it as", f.img.ID)
}
