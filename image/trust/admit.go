package trust

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/crivet/crivet/image/record"
	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
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

// Identity is what an image is verified as: a registry reference it was
// pulled by, or the archive it was imported from (whose transport and
// scope the policy then applies, with the manifest verified at import).
type Identity struct {
	Name     string
	Ref      types.ImageReference
	Manifest digest.Digest // "" = the record's verified manifest
}

func dockerIdentity(named reference.Named) (Identity, bool) {
	ref, err := docker.NewReference(named)
	if err != nil {
		return Identity{}, false
	}
	return Identity{Name: named.String(), Ref: ref}, true
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
func (v *Verifier) Admit(ctx context.Context, img *record.Image, userRef string, pol *policy.Policy) (Admission, error) {
	adm, _, err := v.admit(ctx, img, userRef, pol, &v.admitted)
	return adm, err
}

// admit is Admit with the cache to use (nil: none); it also returns the
// identities it tried. What the image is verified as follows the identity
// rule (identity.go): exactly how userRef found it.
func (v *Verifier) admit(ctx context.Context, img *record.Image, userRef string, pol *policy.Policy, cache *admitCache) (Admission, []Identity, error) {
	var ids []Identity
	fromRecord := true
	if userRef != "" {
		f, err := v.userFound(userRef, img)
		if err != nil {
			return Admission{}, nil, &classed{err, policy.ReasonReferenceMismatch}
		}
		if f.How != ByID {
			fromRecord = false
			if ids = f.Identities(); len(ids) == 0 {
				return Admission{}, nil, &classed{fmt.Errorf("%w: %w", policy.ErrRefused, errNoProvenance(f, userRef)), policy.ReasonNotVerifiable}
			}
		} else {
			ids = f.Identities()
		}
	} else {
		ids = recordedIdentities(img.Record)
	}
	if len(ids) == 0 {
		// Nothing recorded to verify the image as: no policy can vouch
		// for it, whatever it says about some made-up name.
		f := &Found{Img: &storage.Image{ID: img.StorageID()}, How: ByID}
		return Admission{}, nil, &classed{fmt.Errorf("%w: %w", policy.ErrRefused, errNoProvenance(f, userRef)), policy.ReasonNotVerifiable}
	}
	fp := pol.Fingerprint()
	var errs []error
	for _, id := range ids {
		manifest := id.Manifest
		if manifest == "" {
			manifest = img.Record.VerifiedManifest()
		}
		key := admitKey(fp, manifest, id.Ref.Transport().Name()+":"+id.Name)
		hit := cache.has(key)
		if cache != nil {
			// A dry run (crivet policy check --stored) uses no cache.
			v.obs.AdmissionCache(hit)
		}
		if hit {
			return Admission{Identity: id.Name, FromRecord: fromRecord, Cached: true, ref: id.Ref}, ids, nil
		}
		err := v.verifyAs(ctx, img, manifest, id.Ref, pol)
		if ir, ok := id.Ref.(*ImportRef); ok && errors.As(err, new(*policy.Rejection)) {
			// Bundles that travelled with the archive vouch for it only.
			err = v.verifyArchiveBundles(ctx, img, manifest, ir, pol, err)
		}
		if err == nil {
			// Only admissions are cached: a rejection may be lifted by
			// signatures a later pull stores for the same manifest.
			cache.add(key)
			return Admission{Identity: id.Name, FromRecord: fromRecord, ref: id.Ref}, ids, nil
		}
		var rej *policy.Rejection
		if !errors.As(err, &rej) {
			// Not verifiable is not admitted: fail closed, as a refusal.
			err = &classed{fmt.Errorf("%w: image %s cannot be verified as %s: %w", policy.ErrRefused, img.ID, id.Name, err), policy.ReasonNotVerifiable}
		}
		errs = append(errs, err)
	}
	return Admission{}, ids, refusal(img, ids, errs)
}

// refusal is the one error of a failed admission: the library's decision
// itself when the only candidate was rejected, else every candidate's
// outcome under ErrRefused.
func refusal(img *record.Image, ids []Identity, errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = id.Name
	}
	return fmt.Errorf("%w: image %s is admitted under none of the references it was pulled by (%s): %w",
		policy.ErrRefused, img.ID, strings.Join(names, ", "), errors.Join(errs...))
}

// userFound resolves userRef with the one lookup and checks that it
// names img, the image being created.
func (v *Verifier) userFound(userRef string, img *record.Image) (*Found, error) {
	f, err := v.store.Resolve(userRef)
	if err != nil {
		return nil, fmt.Errorf("%w: user_specified_image %q does not name the image being created (%s): %w", policy.ErrRefused, userRef, img.ID, err)
	}
	if f.Img.ID != img.StorageID() {
		return nil, fmt.Errorf("%w: user_specified_image %q names image sha256:%s, not the image being created (%s)", policy.ErrRefused, userRef, f.Img.ID, img.ID)
	}
	return f, nil
}

// admitKey identifies one admission: the policy with the current content
// of every file it names, the verified manifest, and the identity.
func admitKey(policyFingerprint, manifest digest.Digest, identity string) string {
	return string(policyFingerprint) + "\x00" + string(manifest) + "\x00" + identity
}

// StripTagIfDigested drops the tag of a reference that also names a
// digest: the digest is what it means.
func StripTagIfDigested(named reference.Named) reference.Named {
	if d, ok := named.(reference.Digested); ok {
		if _, tagged := named.(reference.Tagged); tagged {
			if n, err := reference.WithDigest(reference.TrimNamed(named), d.Digest()); err == nil {
				return n
			}
		}
	}
	return named
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
