package image

import (
	"context"
	"errors"
	"testing"

	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
)

func (e *env) admit(img *Image, userRef, ns string) (Admission, error) {
	e.t.Helper()
	pol, err := policy.NewStore(e.global, e.nsDir).ForNamespace(ns)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.svc.Admit(context.Background(), img, userRef, pol)
}

func TestAdmitRejectsImagePulledOnlyUnderAnotherNamespacesPolicy(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	unsigned := fixtures.PushImage(t, e.ref("app/loose:1"), 1024)
	e.setNamespace("loose", acceptAll)
	e.setNamespace("strict", anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	img := e.mustPull(unsigned.Ref, "loose")
	e.reg.Stop() // the decision is made from local data only

	_, err := e.admit(img, unsigned.Ref, "strict")
	var rej *policy.Rejection
	if !errors.As(err, &rej) || rej.Error() != "Source image rejected: "+noSignature {
		t.Fatalf("strict namespace admitted an unsigned image: %v", err)
	}
	// A namespace without a file of its own gets the global policy (here permissive).
	if _, err := e.admit(img, unsigned.Ref, "other"); err != nil {
		t.Fatalf("global policy: %v", err)
	}
	// Global made strict: the check is always evaluated, file or not.
	e.setGlobal(rejectAll)
	if _, err := e.admit(img, unsigned.Ref, "other"); !errors.As(err, &rej) {
		t.Fatalf("strict global policy admitted: %v", err)
	}
}

func TestAdmitVerifiesStoredSignaturesOfflineAndCaches(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	signed := fixtures.PushImage(t, e.ref("app/signed:1"), 1024)
	key.Sign(t, signed.Ref)
	e.setNamespace("strict", anyDocker(keyReq(key.PublicKeyPath, `{"type":"matchRepoDigestOrExact"}`)))
	img := e.mustPull(signed.Ref, "")
	e.reg.Stop()

	a, err := e.admit(img, signed.Ref, "strict")
	if err != nil || a.Cached || a.Identity != signed.Ref {
		t.Fatalf("first admission: %+v %v", a, err)
	}
	a, err = e.admit(img, signed.Ref, "strict")
	if err != nil || !a.Cached {
		t.Fatalf("second admission not cached: %+v %v", a, err)
	}
	// Without a user reference, the recorded one is used and said so.
	a, err = e.admit(img, "", "strict")
	if err != nil || !a.FromRecord || a.Identity != signed.Ref {
		t.Fatalf("admission from record: %+v %v", a, err)
	}
	// A digest wins over a (wrong) tag.
	if _, err := e.admit(img, e.ref("app/signed:nope@"+signed.ManifestDigest), "strict"); err != nil {
		t.Fatalf("digested reference: %v", err)
	}
	// The same bytes under another name do not carry the signature.
	if _, err := e.admit(img, e.ref("app/signed:2"), "strict"); err == nil {
		t.Fatal("admitted under a tag the signature does not name")
	}
	// A policy edit is a new policy: the cache does not carry over.
	e.setNamespace("strict", rejectAll)
	if _, err := e.admit(img, signed.Ref, "strict"); err == nil {
		t.Fatal("cached admission survived a policy edit")
	}
}

func TestAdmitWithoutAnyReferenceNeedsNoSignaturePolicy(t *testing.T) {
	e := newEnv(t)
	img := e.mustPull(fixtures.PushImage(t, e.ref("app/x:1"), 1024).Ref, "")
	img.Record.References = nil
	img.RepoTags = nil
	if _, err := e.admit(img, "", ""); err != nil {
		t.Fatalf("accept-anything policy refused an unnamed image: %v", err)
	}
	key := fixtures.NewSigstoreKey(t)
	e.setGlobal(anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	if _, err := e.admit(img, "", ""); err == nil {
		t.Fatal("a policy requiring signatures admitted an image with no reference")
	}
}
