package image

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
)

// Admission is the outcome of Admit.
type Admission struct {
	// Identity is the reference the image was admitted as: a registry
	// reference, or "<transport>:<path>:<name>" for an imported image.
	Identity string
	// FromRecord: no reference was given; Identity is one the image was pulled by.
	FromRecord bool
	// Cached: an earlier identical decision was reused.
	Cached bool
	// Warning is the reason of a refusal the namespace's warn mode
	// admitted; "" when the policy allowed the image.
	Warning string

	ref types.ImageReference
}

// identity is what an image is verified as: a registry reference it was
// pulled by, or the archive it was imported from (whose transport and
// scope the policy then applies, with the manifest verified at import).
type identity struct {
	name     string
	ref      types.ImageReference
	manifest digest.Digest // "" = the record's verified manifest
}

func dockerIdentity(named reference.Named) (identity, bool) {
	ref, err := docker.NewReference(named)
	if err != nil {
		return identity{}, false
	}
	return identity{name: named.String(), ref: ref}, true
}

// Admit decides, offline, whether a stored image may run under pol when
// the client calls it userRef (CRI's user_specified_image). The manifest
// and signatures stored at pull time are verified again as if the image
// were userRef in its registry; a name the image only ever got from an
// archive is verified as that archive (`crivet image import`).
//
// userRef is the client's word, so it must name the very image being
// run: it is looked up exactly as ImageStatus looks it up, and any other
// answer (another image, none) is a refusal. A reference that names the
// image by its ID says nothing about where it came from, so such an image
// is verified as the references it was pulled by, never as a name made
// from the ID. With no userRef (older kubelets, critest) the same applies.
// The first recorded reference the policy admits is used.
func (s *Service) Admit(ctx context.Context, img *Image, userRef string, pol *policy.Policy) (Admission, error) {
	adm, _, err := s.admit(ctx, img, userRef, pol, &s.admitted)
	return adm, err
}

// admit is Admit with the cache to use (nil: none); it also returns the
// identities it tried.
func (s *Service) admit(ctx context.Context, img *Image, userRef string, pol *policy.Policy, cache *admitCache) (Admission, []identity, error) {
	var ids []identity
	fromRecord := true
	if userRef != "" {
		named, m, err := s.userIdentity(userRef, img)
		if err != nil {
			return Admission{}, nil, &classed{err, policy.ReasonReferenceMismatch}
		}
		if m == byName {
			ids, fromRecord = identitiesForName(img, named), false
		}
	}
	if fromRecord {
		ids = recordedIdentities(img)
	}
	if len(ids) == 0 {
		// Nothing to verify the image as: only a policy that needs no
		// signature for an unnamed image lets it run.
		named, _ := reference.ParseNormalizedNamed("localhost/crivet-unnamed-image")
		id, _ := dockerIdentity(reference.TagNameOnly(named))
		ids = append(ids, id)
	}
	fp := pol.Fingerprint()
	var errs []error
	for _, id := range ids {
		manifest := id.manifest
		if manifest == "" {
			manifest = img.Record.manifestDigest()
		}
		key := admitKey(fp, manifest, id.ref.Transport().Name()+":"+id.name)
		hit := cache.has(key)
		if cache != nil {
			// A dry run (crivet policy check --stored) uses no cache.
			s.obs.AdmissionCache(hit)
		}
		if hit {
			return Admission{Identity: id.name, FromRecord: fromRecord, Cached: true, ref: id.ref}, ids, nil
		}
		err := s.verifyAs(ctx, img, manifest, id.ref, pol)
		if err == nil {
			// Only admissions are cached: a rejection may be lifted by
			// signatures a later pull stores for the same manifest.
			cache.add(key)
			return Admission{Identity: id.name, FromRecord: fromRecord, ref: id.ref}, ids, nil
		}
		var rej *policy.Rejection
		if !errors.As(err, &rej) {
			// Not verifiable is not admitted: fail closed, as a refusal.
			err = &classed{fmt.Errorf("%w: image %s cannot be verified as %s: %w", policy.ErrRefused, img.ID, id.name, err), policy.ReasonNotVerifiable}
		}
		errs = append(errs, err)
	}
	return Admission{}, ids, refusal(img, ids, errs)
}

// refusal is the one error of a failed admission: the library's decision
// itself when the only candidate was rejected, else every candidate's
// outcome under ErrRefused.
func refusal(img *Image, ids []identity, errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = id.name
	}
	return fmt.Errorf("%w: image %s is admitted under none of the references it was pulled by (%s): %w",
		policy.ErrRefused, img.ID, strings.Join(names, ", "), errors.Join(errs...))
}

// identitiesForName: what the image is verified as when the client names
// it: the registry reference, unless the name is one the image only ever
// got from an archive; then the archives it came from under that name.
func identitiesForName(img *Image, named reference.Named) []identity {
	var ids []identity
	imports, pulled := importsNamed(img.Record, named)
	if pulled || len(imports) == 0 {
		if id, ok := dockerIdentity(named); ok {
			ids = append(ids, id)
		}
	}
	for _, src := range imports {
		ids = append(ids, importIdentity(src))
	}
	return ids
}

// importsNamed returns the import sources recorded under named, and
// whether a pull recorded it too.
func importsNamed(rec *Record, named reference.Named) (imports []*ImportSource, pulled bool) {
	if rec == nil {
		return nil, false
	}
	want := reference.TrimNamed(named).String()
	d, digested := named.(reference.Digested)
	tagged, isTagged := named.(reference.Tagged)
	for _, r := range rec.References {
		rn, err := reference.ParseNormalizedNamed(r.Resolved)
		if err != nil || reference.TrimNamed(rn).String() != want {
			continue
		}
		rn = reference.TagNameOnly(rn)
		switch {
		case digested:
			if r.Import != nil && r.Import.Manifest != d.Digest() && rec.IndexDigest != d.Digest() {
				continue
			}
		case isTagged:
			if t, ok := rn.(reference.Tagged); !ok || t.Tag() != tagged.Tag() {
				continue
			}
		}
		if r.Import != nil {
			imports = append(imports, r.Import)
		} else {
			pulled = true
		}
	}
	return imports, pulled
}

// userIdentity checks that userRef names img and returns the identity to
// verify it as (for a name) or byID (verify as the recorded references).
func (s *Service) userIdentity(userRef string, img *Image) (reference.Named, match, error) {
	found, m, err := s.findMatch(userRef)
	if err != nil {
		return nil, m, fmt.Errorf("%w: user_specified_image %q does not name the image being created (%s): %w", policy.ErrRefused, userRef, img.ID, err)
	}
	if found.ID != img.StorageID() {
		return nil, m, fmt.Errorf("%w: user_specified_image %q names image sha256:%s, not the image being created (%s)", policy.ErrRefused, userRef, found.ID, img.ID)
	}
	if m == byID {
		return nil, m, nil
	}
	named, err := s.identityFor(userRef, img)
	if err != nil {
		return nil, m, fmt.Errorf("%w: %w", policy.ErrRefused, err)
	}
	if d, ok := named.(reference.Digested); ok && !img.hasDigest(d.Digest()) {
		return nil, m, fmt.Errorf("%w: user_specified_image %q: digest %s is not a manifest or index recorded for image %s", policy.ErrRefused, userRef, d.Digest(), img.ID)
	}
	return named, m, nil
}

// admitKey identifies one admission: the policy with the current content
// of every file it names, the verified manifest, and the identity.
func admitKey(policyFingerprint, manifest digest.Digest, identity string) string {
	return string(policyFingerprint) + "\x00" + string(manifest) + "\x00" + identity
}

func (r *Record) manifestDigest() digest.Digest {
	if r == nil {
		return ""
	}
	return r.ManifestDigest
}

// hasDigest: d is the verified manifest, the index it was chosen from, or
// a manifest the store holds for this image.
func (i *Image) hasDigest(d digest.Digest) bool {
	if i.Record != nil && (i.Record.ManifestDigest == d || i.Record.IndexDigest == d) {
		return true
	}
	for _, rd := range i.RepoDigests {
		if strings.HasSuffix(rd, "@"+d.String()) {
			return true
		}
	}
	return false
}

// identityFor normalises a user reference the way the pull did: the
// reference it was recorded as, else the registries.conf resolution
// (aliases, search registries, docker.io); a digest wins over a tag.
func (s *Service) identityFor(userRef string, img *Image) (reference.Named, error) {
	if img.Record != nil {
		for _, r := range img.Record.References {
			if r.User == userRef {
				if named, err := reference.ParseNormalizedNamed(r.Resolved); err == nil {
					return stripTagIfDigested(named), nil
				}
			}
		}
	}
	cands, err := s.candidates(s.systemContext(), userRef)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", userRef, err)
	}
	// With several search registries, the one the image came from.
	for _, c := range cands {
		for _, tag := range img.RepoTags {
			if named, err := reference.ParseNormalizedNamed(tag); err == nil && named.Name() == c.Name() {
				return stripTagIfDigested(c), nil
			}
		}
	}
	return stripTagIfDigested(cands[0]), nil
}

func stripTagIfDigested(named reference.Named) reference.Named {
	if d, ok := named.(reference.Digested); ok {
		if _, tagged := named.(reference.Tagged); tagged {
			if n, err := reference.WithDigest(reference.TrimNamed(named), d.Digest()); err == nil {
				return n
			}
		}
	}
	return named
}

// recordedIdentities: every reference the image was pulled or imported
// by, most recent first, then its storage names (an image stored by
// another tool) that no import explains.
func recordedIdentities(img *Image) []identity {
	var out []identity
	seen := map[string]bool{}
	addDocker := func(ref string) {
		named, err := reference.ParseNormalizedNamed(ref)
		if err != nil {
			return
		}
		named = stripTagIfDigested(reference.TagNameOnly(named))
		if seen["docker:"+named.String()] {
			return
		}
		if imports, pulled := importsNamed(img.Record, named); len(imports) > 0 && !pulled {
			return // a name from an archive is verified as the archive
		}
		seen["docker:"+named.String()] = true
		if id, ok := dockerIdentity(named); ok {
			out = append(out, id)
		}
	}
	if img.Record != nil {
		refs := slices.Clone(img.Record.References)
		// Most recent first: the name the image is currently known by.
		slices.Reverse(refs)
		for _, r := range refs {
			if r.Import == nil {
				addDocker(r.Resolved)
				continue
			}
			if key := "import:" + r.Import.String(); !seen[key] {
				seen[key] = true
				out = append(out, importIdentity(r.Import))
			}
		}
	}
	for _, t := range img.RepoTags {
		addDocker(t)
	}
	return out
}

// admitCache remembers admissions; bounded, and simply cleared when full
// (a miss costs one offline verification, ~20 ms).
type admitCache struct {
	mu sync.Mutex
	m  map[string]struct{}
}

const admitCacheMax = 4096

func (c *admitCache) has(k string) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[k]
	return ok
}

func (c *admitCache) add(k string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= admitCacheMax {
		c.m = map[string]struct{}{}
	}
	c.m[k] = struct{}{}
}
