package image

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	"github.com/opencontainers/go-digest"
)

// bundlesByDigest indexes a check's bundles by their own digest: the
// registry lists referrers in no order the test may rely on.
func bundlesByDigest(t *testing.T, res CheckResult) map[string]BundleCheck {
	t.Helper()
	out := map[string]BundleCheck{}
	for _, b := range res.Bundles {
		if _, dup := out[b.Digest]; dup {
			t.Fatalf("bundle %s listed twice: %+v", b.Digest, res.Bundles)
		}
		out[b.Digest] = b
	}
	return out
}

// `crivet policy check` of a bundle-signed image shows the bundle: where
// it was found (through the referrers API or the referrers tag schema,
// in which repository), what it signs, the key that verified it and that
// it admitted the image.
func TestCheckListsTheBundleThatAdmits(t *testing.T) {
	for _, withAPI := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", withAPI), func(t *testing.T) {
			e := bundleEnv(t, withAPI)
			key := fixtures.NewBundleKey(t)
			e.setNamespace("strict", anyDocker(bundleReq(key.PublicKeyPath)))
			signed := fixtures.PushImage(t, e.ref("team/signed:1"), 1024)
			b := key.Bundle(t, signed.ManifestDigest, fixtures.CosignSignPredicateType)
			fixtures.AttachBundle(t, signed.DigestRef(), b, fixtures.CosignSignPredicateType)

			res, err := e.checker(nil).Check(context.Background(), PullRequest{Ref: signed.Ref, Namespace: "strict"})
			if err != nil || res.Outcome != "allowed" {
				t.Fatalf("check: %+v %v", res, err)
			}
			source := "tag-schema"
			if withAPI {
				source = "referrers-api"
			}
			want := BundleCheck{VerifiedAs: signed.Ref, Source: source, Repository: e.ref("team/signed"),
				Digest: digest.FromBytes(b).String(), FoundFor: signed.ManifestDigest, FoundVia: "manifest",
				Subject: signed.ManifestDigest, Signer: &BundleSigner{Key: key.PublicKeyPath}, Outcome: "admitted"}
			if len(res.Bundles) != 1 {
				t.Fatalf("bundles %+v, want one", res.Bundles)
			}
			got := res.Bundles[0]
			if got.Signer == nil || *got.Signer != *want.Signer {
				t.Errorf("signer %+v, want %+v", got.Signer, want.Signer)
			}
			got.Signer = want.Signer
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("bundle\n%+v, want\n%+v", got, want)
			}
		})
	}
}

// Every bundle found is listed with its own verdict, so an operator sees
// why none admitted: an attestation is not a signature, and a signature
// by a key the policy does not trust is an untrusted key.
func TestCheckListsEachRefusedBundleWithItsReason(t *testing.T) {
	e := bundleEnv(t, true)
	key, other := fixtures.NewBundleKey(t), fixtures.NewBundleKey(t)
	e.setNamespace("strict", anyDocker(bundleReq(key.PublicKeyPath)))
	img := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	attestation := key.Bundle(t, img.ManifestDigest, "https://slsa.dev/provenance/v1")
	fixtures.AttachBundle(t, img.DigestRef(), attestation, "https://slsa.dev/provenance/v1")
	wrongKey := other.Bundle(t, img.ManifestDigest, fixtures.CosignSignPredicateType)
	fixtures.AttachBundle(t, img.DigestRef(), wrongKey, fixtures.CosignSignPredicateType)

	res, err := e.checker(nil).Check(context.Background(), PullRequest{Ref: img.Ref, Namespace: "strict"})
	if err == nil || res.Outcome != "rejected" {
		t.Fatalf("check: %+v %v", res, err)
	}
	got := bundlesByDigest(t, res)
	for b, class := range map[string]string{string(attestation): "not_a_signature", string(wrongKey): "untrusted_key"} {
		c, ok := got[digest.FromString(b).String()]
		switch {
		case !ok:
			t.Errorf("bundle %s not listed: %+v", class, res.Bundles)
		case c.Outcome != "rejected" || c.ReasonClass != class || !strings.Contains(c.Reason, class) || c.Signer != nil || c.Subject != "":
			t.Errorf("bundle %+v, want rejected as %s, with no unverified claim shown", c, class)
		case c.Source != "referrers-api" || c.Repository != e.ref("team/app") || c.FoundFor != img.ManifestDigest:
			t.Errorf("bundle %+v: not where it was found", c)
		}
	}
	if len(got) != 2 {
		t.Errorf("%d bundles listed, want 2: %+v", len(got), res.Bundles)
	}
}

// --stored lists the bundles kept with the image, offline: the one found
// in the repository the image is verified as admits it; verified as a
// copy in another repository, the same bundle is listed as not used, and
// why.
func TestCheckStoredListsKeptBundlesOffline(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewBundleKey(t)
	e.setNamespace("strict", anyDocker(bundleReq(key.PublicKeyPath)))
	e.setNamespace("loose", acceptAll)
	signed := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	b := key.Bundle(t, signed.ManifestDigest, fixtures.CosignSignPredicateType)
	fixtures.AttachBundle(t, signed.DigestRef(), b, fixtures.CosignSignPredicateType)
	copyRef := e.ref("mirror/app:1")
	fixtures.PushAnnotatedCopy(t, signed.Ref, copyRef)
	e.mustPull(signed.Ref, "strict")
	e.mustPull(copyRef, "loose")
	e.reg.Stop() // offline from here

	c := e.checker(nil)
	res, err := c.CheckStored(context.Background(), "strict", signed.Ref)
	if err != nil || res.Outcome != "allowed" || len(res.Bundles) != 1 {
		t.Fatalf("stored check: %+v %v", res, err)
	}
	got := res.Bundles[0]
	if got.Outcome != "admitted" || got.Digest != digest.FromBytes(b).String() || got.Source != "tag-schema" ||
		got.Repository != e.ref("team/app") || got.Subject != signed.ManifestDigest || got.Signer == nil || got.Signer.Key != key.PublicKeyPath {
		t.Errorf("kept bundle %+v", got)
	}

	res, err = c.CheckStored(context.Background(), "strict", copyRef)
	if err == nil || res.Outcome != "rejected" || len(res.Bundles) != 1 {
		t.Fatalf("stored check of the copy: %+v %v", res, err)
	}
	got = res.Bundles[0]
	if got.Outcome != "not_used" || got.VerifiedAs != copyRef || got.Repository != e.ref("team/app") ||
		!strings.Contains(got.Reason, "found in repository "+e.ref("team/app")) || got.Signer != nil {
		t.Errorf("kept bundle, verified as the copy: %+v", got)
	}
}
