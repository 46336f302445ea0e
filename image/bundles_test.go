package image

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
)

func bundleReq(keyPath string) string {
	return fmt.Sprintf(`{"type":"sigstoreBundle","keyPath":%q}`, keyPath)
}

// bundleEnv is a node whose registries.conf also knows reg (a registry
// with the OCI 1.1 referrers API, or without one).
func bundleEnv(t testing.TB, withAPI bool) *env {
	e := newEnv(t)
	if withAPI {
		e.reg = fixtures.StartRegistryWithReferrers(t)
		fixtures.WriteRegistriesConf(t, e.regConf+".api", e.reg)
		e.regConf += ".api"
		reopen(e, func(*Config) {}, nil)
	}
	return e
}

func wantRejected(t *testing.T, err error, what, contains string) {
	t.Helper()
	var rej *policy.Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("%s: %v, want a policy rejection", what, err)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("%s: %v, want it to say %q", what, err, contains)
	}
}

// Images signed as cosign v3 signs them by default (a Sigstore bundle
// attached as an OCI referrer) are admitted by a sigstoreBundle
// requirement at pull and again offline at create, through the referrers
// API and through the referrers tag schema; another key, an attestation, a
// bundle for another digest and no bundle at all are refused.
func TestSigstoreBundlesAtPullAndCreate(t *testing.T) {
	for _, withAPI := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", withAPI), func(t *testing.T) {
			e := bundleEnv(t, withAPI)
			key, other := fixtures.NewBundleKey(t), fixtures.NewBundleKey(t)
			e.setNamespace("strict", anyDocker(bundleReq(key.PublicKeyPath)))
			e.setNamespace("other", anyDocker(bundleReq(other.PublicKeyPath)))

			signed := fixtures.PushImage(t, e.ref("team/signed:1"), 1024)
			key.Sign(t, signed.DigestRef())
			img := e.mustPull(signed.Ref, "strict")

			unsigned := fixtures.PushImage(t, e.ref("team/unsigned:1"), 1024)
			_, err := e.pull(unsigned.Ref, "strict")
			wantRejected(t, err, "unsigned", "no sigstore bundle exists")

			attested := fixtures.PushImage(t, e.ref("team/attested:1"), 1024)
			fixtures.AttachBundle(t, attested.DigestRef(), key.Bundle(t, attested.ManifestDigest, "https://slsa.dev/provenance/v1"), "https://slsa.dev/provenance/v1")
			_, err = e.pull(attested.Ref, "strict")
			wantRejected(t, err, "attestation only", "not_a_signature")

			elsewhere := fixtures.PushImage(t, e.ref("team/elsewhere:1"), 1024)
			fixtures.AttachBundle(t, elsewhere.DigestRef(), key.Bundle(t, signed.ManifestDigest, fixtures.CosignSignPredicateType), fixtures.CosignSignPredicateType)
			_, err = e.pull(elsewhere.Ref, "strict")
			wantRejected(t, err, "bundle for another digest", "digest_mismatch")

			_, err = e.pull(signed.Ref, "other")
			wantRejected(t, err, "another key", "none of 1 sigstore bundles was accepted")

			e.reg.Stop() // the create-time check is offline
			e.svc.trust.ForgetAdmissions()
			if _, err := e.admit(img, signed.Ref, "strict"); err != nil {
				t.Fatalf("create-time check of the bundle-signed image: %v", err)
			}
			_, err = e.admit(img, signed.Ref, "other")
			wantRejected(t, err, "create in a namespace trusting another key", "sigstore bundle")
		})
	}
}

// A sigstoreBundle requirement is an alternative to the scope's other
// requirements: a legacy cosign signature or a v3 bundle.
func TestSigstoreBundleOrLegacySignature(t *testing.T) {
	e := newEnv(t)
	legacyKey, bundleKey := fixtures.NewSigstoreKey(t), fixtures.NewBundleKey(t)
	e.setNamespace("either", anyDocker(keyReq(legacyKey.PublicKeyPath, matchRepo)+","+bundleReq(bundleKey.PublicKeyPath)))
	legacy := fixtures.PushImage(t, e.ref("team/legacy:1"), 1024)
	legacyKey.Sign(t, legacy.Ref)
	v3 := fixtures.PushImage(t, e.ref("team/v3:1"), 1024)
	bundleKey.Sign(t, v3.DigestRef())
	neither := fixtures.PushImage(t, e.ref("team/neither:1"), 1024)
	e.mustPull(legacy.Ref, "either")
	e.mustPull(v3.Ref, "either")
	_, err := e.pull(neither.Ref, "either")
	wantRejected(t, err, "neither signature", noSignature)
}

// A bundle names no repository: it was found in (and vouches for) the
// repository the image was pulled from. The same image pulled from
// another repository without a bundle there is not admitted at create by
// the first repository's bundle.
func TestSigstoreBundleVouchesOnlyForTheRepositoryItWasFoundIn(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewBundleKey(t)
	e.setNamespace("strict", anyDocker(bundleReq(key.PublicKeyPath)))
	e.setNamespace("loose", acceptAll)
	signed := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	key.Sign(t, signed.DigestRef())
	copyRef := e.ref("mirror/app:1")
	fixtures.PushAnnotatedCopy(t, signed.Ref, copyRef)
	img := e.mustPull(signed.Ref, "strict")
	e.mustPull(copyRef, "loose")
	e.reg.Stop()
	img, err := e.svc.Get(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.trust.ForgetAdmissions()
	if _, err := e.admit(img, signed.Ref, "strict"); err != nil {
		t.Fatalf("signed repository: %v", err)
	}
	_, err = e.admit(img, copyRef, "strict")
	wantRejected(t, err, "the copy's name", "no sigstore bundle exists")
}

// Real cosign v3.1.3 with its defaults (new bundle format, signing config
// without log or timestamp services) and a key, on a registry with the
// referrers API and on one without: crivet admits what cosign signed.
func TestCosignV3SignedImagesAreAdmitted(t *testing.T) {
	cosign := fixtures.NewCosignKey(t) // skips when cosign is not built
	for _, withAPI := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", withAPI), func(t *testing.T) {
			e := bundleEnv(t, withAPI)
			e.setNamespace("strict", anyDocker(bundleReq(cosign.PublicKey)))
			signed := fixtures.PushImage(t, e.ref("team/cosigned:1"), 1024)
			cosign.Sign(t, signed.DigestRef())
			img := e.mustPull(signed.Ref, "strict")
			e.reg.Stop()
			e.svc.trust.ForgetAdmissions()
			if _, err := e.admit(img, signed.Ref, "strict"); err != nil {
				t.Fatalf("create-time check: %v", err)
			}
		})
	}
}

// The admission cache's fingerprint covers the key a sigstoreBundle
// requirement names: a rotated key is honoured at the next create.
func TestSigstoreBundleKeyRotationHonouredAtCreate(t *testing.T) {
	e := newEnv(t)
	key, other := fixtures.NewBundleKey(t), fixtures.NewBundleKey(t)
	e.setNamespace("strict", anyDocker(bundleReq(key.PublicKeyPath)))
	signed := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	key.Sign(t, signed.DigestRef())
	img := e.mustPull(signed.Ref, "strict")
	e.reg.Stop()
	if _, err := e.admit(img, signed.Ref, "strict"); err != nil {
		t.Fatal(err)
	}
	if a, err := e.admit(img, signed.Ref, "strict"); err != nil || !a.Cached {
		t.Fatalf("second create: %+v, %v; want a cached admission", a, err)
	}
	writeFile(t, key.PublicKeyPath, string(mustReadFile(t, other.PublicKeyPath)))
	_, err := e.admit(img, signed.Ref, "strict")
	wantRejected(t, err, "create after the key was rotated", "untrusted_key")
}
