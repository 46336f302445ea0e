package image

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
)

// Admission is the outcome of Admit.
type Admission struct {
	// Identity is the reference the image was admitted as.
	Identity string
	// FromRecord: no reference was given; Identity is one the image was pulled by.
	FromRecord bool
	// Cached: an earlier identical decision was reused.
	Cached bool
}

// Admit decides, offline, whether a stored image may run under pol when
// the client calls it userRef (CRI's user_specified_image). The manifest
// and signatures stored at pull time are verified again as if the image
// were userRef in its registry.
//
// With no userRef (older kubelets, crictl), each reference the image was
// pulled by is tried and the first that the policy admits is used.
func (s *Service) Admit(ctx context.Context, img *Image, userRef string, pol *policy.Policy) (Admission, error) {
	var ids []reference.Named
	fromRecord := userRef == ""
	if userRef != "" {
		named, err := s.identityFor(userRef, img)
		if err != nil {
			return Admission{}, err
		}
		ids = append(ids, named)
	} else {
		ids = s.recordedIdentities(img)
	}
	if len(ids) == 0 {
		// Nothing to verify the image as: only a policy that needs no
		// signature for an unnamed image lets it run.
		named, _ := reference.ParseNormalizedNamed("localhost/crivet-unnamed-image")
		ids = append(ids, reference.TagNameOnly(named))
	}
	var lastErr error
	for _, named := range ids {
		key := admitKey(pol.Digest, img.Record.ManifestDigest, named.String())
		if s.admitted.has(key) {
			return Admission{Identity: named.String(), FromRecord: fromRecord, Cached: true}, nil
		}
		err := s.VerifyStored(ctx, img, named, pol)
		if err == nil {
			// Only admissions are cached: a rejection may be lifted by
			// signatures a later pull stores for the same manifest.
			s.admitted.add(key)
			return Admission{Identity: named.String(), FromRecord: fromRecord}, nil
		}
		lastErr = err
	}
	return Admission{}, lastErr
}

func admitKey(pol, manifest digest.Digest, identity string) string {
	return string(pol) + "\x00" + string(manifest) + "\x00" + identity
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

func (s *Service) recordedIdentities(img *Image) []reference.Named {
	var out []reference.Named
	seen := map[string]bool{}
	add := func(ref string) {
		named, err := reference.ParseNormalizedNamed(ref)
		if err != nil || seen[named.String()] {
			return
		}
		seen[named.String()] = true
		out = append(out, stripTagIfDigested(reference.TagNameOnly(named)))
	}
	if img.Record != nil {
		refs := slices.Clone(img.Record.References)
		// Most recent first: the name the image is currently known by.
		slices.Reverse(refs)
		for _, r := range refs {
			add(r.Resolved)
		}
	}
	for _, t := range img.RepoTags {
		add(t)
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
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[k]
	return ok
}

func (c *admitCache) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= admitCacheMax {
		c.m = map[string]struct{}{}
	}
	c.m[k] = struct{}{}
}
