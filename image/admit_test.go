package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// An allow-list policy exempts one repository (the pause image, say) and
// requires signatures for the rest. A request that claims the exempt name,
// or names the image by its ID, must not run an unsigned image of another
// repository under that exemption.
func TestAdmitRefusesUserReferenceThatDoesNotNameTheImage(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	pause := fixtures.PushImage(t, e.ref("infra/pause:3"), 512)
	app := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	e.setNamespace("loose", acceptAll)
	e.setNamespace("strict", fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{%q:[{"type":"insecureAcceptAnything"}],%q:[%s]}}}`,
		e.reg.Addr+"/infra/pause", e.reg.Addr+"/team", keyReq(key.PublicKeyPath, matchRepo)))
	pauseImg := e.mustPull(pause.Ref, "loose")
	appImg := e.mustPull(app.Ref, "loose")
	e.reg.Stop()

	refused := func(name, userRef, want string) {
		t.Helper()
		_, err := e.admit(appImg, userRef, "strict")
		if err == nil {
			t.Fatalf("%s: unsigned image admitted in the strict namespace as %q", name, userRef)
		}
		var rej *policy.Rejection
		if !errors.Is(err, policy.ErrRefused) && !errors.As(err, &rej) {
			t.Fatalf("%s: refusal is not a policy refusal: %v", name, err)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: error %q does not say %q", name, err, want)
		}
	}
	// The exempt name, which ImageStatus resolves to the pause image.
	refused("exempt name", pause.Ref, "names image "+pauseImg.ID+", not the image being created ("+appImg.ID+")")
	// The exempt repository with the app's digest: no such image there.
	refused("exempt repo, app digest", e.ref("infra/pause@"+app.ManifestDigest), "does not name the image being created")
	// A name nothing was pulled as.
	refused("unknown name", e.ref("infra/pause:other"), "does not name the image being created")
	// The image's own ID, full, bare and as a prefix: verified as the
	// reference it was pulled by, which the strict policy rejects.
	hexID := strings.TrimPrefix(appImg.ID, "sha256:")
	for _, ref := range []string{appImg.ID, hexID, "sha256:" + hexID[:12], hexID[:12]} {
		refused("image ID "+ref, ref, noSignature)
	}
	// Without any user reference: the same.
	refused("no user reference", "", noSignature)

	// The pause image itself, by name or by ID, is admitted by its exemption.
	for _, ref := range []string{pause.Ref, pauseImg.ID, "sha256:" + strings.TrimPrefix(pauseImg.ID, "sha256:")[:16]} {
		a, err := e.admit(pauseImg, ref, "strict")
		if err != nil {
			t.Fatalf("pause image as %q: %v", ref, err)
		}
		if a.Identity != pause.Ref {
			t.Errorf("pause image as %q verified as %q, want %q", ref, a.Identity, pause.Ref)
		}
	}
}

// The library reads key files at each evaluation; a cached admission must
// not outlive the key it was made with.
func TestAdmitHonoursRotatedAndRevokedKeys(t *testing.T) {
	e := newEnv(t)
	k1, k2 := fixtures.NewSigstoreKey(t), fixtures.NewSigstoreKey(t)
	signed := fixtures.PushImage(t, e.ref("app/rotate:1"), 1024)
	k1.Sign(t, signed.Ref)
	keyFile := filepath.Join(e.dir, "keys", "trusted.pub")
	writeFile(t, keyFile, string(mustReadFile(t, k1.PublicKeyPath)))
	e.setNamespace("strict", anyDocker(keyReq(keyFile, matchRepo)))
	img := e.mustPull(signed.Ref, "strict")
	e.reg.Stop()

	if a, err := e.admit(img, signed.Ref, "strict"); err != nil || a.Cached {
		t.Fatalf("first admission: %+v %v", a, err)
	}
	if a, err := e.admit(img, signed.Ref, "strict"); err != nil || !a.Cached {
		t.Fatalf("second admission not cached: %+v %v", a, err)
	}
	// Rotation: the trusted key is now k2 (the policy file is unchanged).
	writeFile(t, keyFile, string(mustReadFile(t, k2.PublicKeyPath)))
	a, err := e.admit(img, signed.Ref, "strict")
	var rej *policy.Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("admitted after the key was rotated away: %+v %v", a, err)
	}
	// Back to k1: admitted again, and cached again.
	writeFile(t, keyFile, string(mustReadFile(t, k1.PublicKeyPath)))
	if _, err := e.admit(img, signed.Ref, "strict"); err != nil {
		t.Fatalf("k1 restored: %v", err)
	}
	// Revocation: the key file removed.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	if a, err := e.admit(img, signed.Ref, "strict"); err == nil {
		t.Fatalf("admitted with the key file removed: %+v", a)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Pull and create decisions are made and logged by this package, in one
// shape: the same keys, the stage telling them apart.
func TestPullAndCreateDecisionsAreLoggedInOneShape(t *testing.T) {
	e := newEnv(t)
	e.setNamespace("strict", rejectAll)
	pushed := fixtures.PushImage(t, e.ref("app/shape:1"), 1024)
	img := e.mustPull(pushed.Ref, "")
	if _, err := e.svc.AdmitFor(context.Background(), AdmitRequest{Image: img, UserRef: pushed.Ref, Namespace: "strict", Pod: "p1", Container: "c1"}); err == nil {
		t.Fatal("strict namespace admitted")
	}
	if _, err := e.svc.AdmitFor(context.Background(), AdmitRequest{Image: img, UserRef: pushed.Ref, Namespace: "other", Pod: "p2", Container: "c2"}); err != nil {
		t.Fatal(err)
	}
	logs := e.decisions.all()
	if len(logs) != 3 {
		t.Fatalf("want 3 decisions (pull, create rejected, create allowed): %s", e.decisions)
	}
	pull, rejected, allowed := logs[0], logs[1], logs[2]
	for _, k := range []string{"stage", "namespace", "reference", "identity", "image", "digest", "policy", "policy_digest", "outcome"} {
		for i, l := range logs {
			if _, ok := l[k]; !ok {
				t.Errorf("decision %d has no %q: %v", i, k, l)
			}
		}
	}
	if pull["stage"] != "pull" || rejected["stage"] != "create" || allowed["stage"] != "create" {
		t.Errorf("stages: %s", e.decisions)
	}
	if rejected["outcome"] != "rejected" || rejected["policy"] != filepath.Join(e.nsDir, "strict.json") || rejected["reason"] == "" ||
		rejected["pod"] != "p1" || rejected["container"] != "c1" || rejected["digest"] != pushed.ManifestDigest {
		t.Errorf("create rejection: %v", rejected)
	}
	if allowed["outcome"] != "allowed" || allowed["policy"] != e.global || allowed["identity"] != pushed.Ref {
		t.Errorf("create admission: %v", allowed)
	}
}
