package image

import (
	"context"
	"errors"
	"testing"

	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
)

// The same image pulled from repository A (signed with K1) and then from
// B (signed with K2): the namespace that trusts K1 for A still admits it.
func TestSignaturesOfEachSourceAreKept(t *testing.T) {
	e := newEnv(t)
	k1, k2, k3 := fixtures.NewSigstoreKey(t), fixtures.NewSigstoreKey(t), fixtures.NewSigstoreKey(t)
	a := fixtures.PushImage(t, e.ref("source-a/app:1"), 1024)
	b := fixtures.CopyImage(t, a.Ref, e.ref("source-b/app:1"))
	if a.ManifestDigest != b.ManifestDigest {
		t.Fatalf("copy changed the manifest: %s vs %s", a.ManifestDigest, b.ManifestDigest)
	}
	k1.Sign(t, a.Ref)
	k2.Sign(t, b.Ref)
	e.setNamespace("ns1", scoped(e.reg.Addr+"/source-a", keyReq(k1.PublicKeyPath, matchRepo)))
	e.setNamespace("ns2", scoped(e.reg.Addr+"/source-b", keyReq(k2.PublicKeyPath, matchRepo)))
	e.setNamespace("ns3", scoped(e.reg.Addr+"/source-a", keyReq(k3.PublicKeyPath, matchRepo)))

	first := e.mustPull(a.Ref, "ns1")
	second := e.mustPull(b.Ref, "ns2")
	if first.ID != second.ID {
		t.Fatalf("the same bytes became two images: %s, %s", first.ID, second.ID)
	}
	img, err := e.svc.Get(second.ID)
	if err != nil {
		t.Fatal(err)
	}
	check := func(ns, identity string) error { return e.verifyStored(img, ns, identity) }
	e.reg.Stop() // everything below is local
	if err := check("ns1", a.Ref); err != nil {
		t.Fatalf("K1's namespace lost A's signature when B's replaced it: %v", err)
	}
	if err := check("ns2", b.Ref); err != nil {
		t.Fatalf("K2's namespace, B's own signature: %v", err)
	}
	// No stored set is K3's: a rejection, the library's own.
	var rej *policy.Rejection
	if err := check("ns3", a.Ref); !errors.As(err, &rej) {
		t.Fatalf("a key that signed nothing: %v", err)
	}
	// Kept signatures still carry their identity: B's claim is not A's.
	if err := check("ns1", e.ref("source-a/other:1")); !errors.As(err, &rej) {
		t.Fatalf("A's signature accepted for another repository: %v", err)
	}
	// Admission at create time goes through the same check.
	pol1, _ := policy.NewStore(e.global, e.nsDir).ForNamespace("ns1")
	if _, err := e.svc.Admit(context.Background(), img, a.Ref, pol1); err != nil {
		t.Fatalf("admit as A under ns1: %v", err)
	}
}
