package image

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
)

func errorsAs(err error, target any) bool { return err != nil && errors.As(err, target) }

const (
	acceptAll = `{"default":[{"type":"insecureAcceptAnything"}]}`
	rejectAll = `{"default":[{"type":"reject"}]}`

	noSignature = "A signature was required, but no signature exists"
	matchRepo   = `{"type":"matchRepository"}`
)

func keyReq(pub, identity string) string {
	return fmt.Sprintf(`{"type":"sigstoreSigned","keyPath":%q,"signedIdentity":%s}`, pub, identity)
}

func keylessReq(ca, issuer, email, rekor, identity string) string {
	return fmt.Sprintf(`{"type":"sigstoreSigned","fulcio":{"caPath":%q,"oidcIssuer":%q,"subjectEmail":%q},"rekorPublicKeyPath":%q,"signedIdentity":%s}`,
		ca, issuer, email, rekor, identity)
}

func gpgReq(keyPath string) string {
	return fmt.Sprintf(`{"type":"signedBy","keyType":"GPGKeys","keyPath":%q}`, keyPath)
}

// scoped is a reject-by-default policy with one requirement for scope.
func scoped(scope, req string) string {
	return fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{%q:[%s]}}}`, scope, req)
}

// anyDocker applies req to every docker image.
func anyDocker(req string) string {
	return fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{"":[%s]}}}`, req)
}

func TestGlobalRejectByDefaultWithPerRepositoryRequirements(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	signed := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	key.Sign(t, signed.Ref)
	unsigned := fixtures.PushImage(t, e.ref("team/app:unsigned"), 1024)
	other := fixtures.PushImage(t, e.ref("other/app:1"), 1024)
	e.setGlobal(scoped(e.reg.Addr+"/team", keyReq(key.PublicKeyPath, matchRepo)))

	e.mustReject(unsigned.Ref, "", noSignature)
	e.mustReject(other.Ref, "", "is rejected by policy")
	img := e.mustPull(signed.Ref, "")
	if img.ID != signed.ConfigDigest {
		t.Fatalf("image ID %s, want config digest %s", img.ID, signed.ConfigDigest)
	}
	if img.Record.ManifestDigest.String() != signed.ManifestDigest {
		t.Errorf("recorded manifest %s, want %s", img.Record.ManifestDigest, signed.ManifestDigest)
	}
}

func TestNamespacePolicyOverridesGlobalAndFallsBack(t *testing.T) {
	e := newEnv(t)
	e.setGlobal(rejectAll)
	e.setNamespace("team-a", acceptAll)
	img := fixtures.PushImage(t, e.ref("app/x:1"), 1024)

	e.mustReject(img.Ref, "", "is rejected by policy")       // no namespace → global
	e.mustReject(img.Ref, "team-b", "is rejected by policy") // no file → global
	got := e.mustPull(img.Ref, "team-a")
	if len(got.Record.Decisions) != 1 {
		t.Fatalf("decisions %+v", got.Record.Decisions)
	}
	d := got.Record.Decisions[0]
	if d.Namespace != "team-a" || d.PolicyPath != filepath.Join(e.nsDir, "team-a.json") || !d.Allowed || d.PolicyDigest == "" {
		t.Errorf("decision %+v", d)
	}

	// The reverse: a strict namespace file under a permissive global policy.
	e.setGlobal(acceptAll)
	e.setNamespace("strict", rejectAll)
	img2 := fixtures.PushImage(t, e.ref("app/y:1"), 1024)
	e.mustReject(img2.Ref, "strict", "is rejected by policy")
	e.mustPull(img2.Ref, "relaxed")
}

func TestMalformedNamespacePolicyFailsClosed(t *testing.T) {
	e := newEnv(t)
	e.setGlobal(acceptAll)
	e.setNamespace("broken", `{"default":[{"type":"insecureAcceptAnything"}]`)
	img := fixtures.PushImage(t, e.ref("app/x:1"), 1024)
	before := e.storeFiles()
	_, err := e.pull(img.Ref, "broken")
	if err == nil {
		t.Fatal("pull under a malformed namespace policy succeeded (fell back to global?)")
	}
	if !strings.Contains(err.Error(), filepath.Join(e.nsDir, "broken.json")) {
		t.Errorf("error does not name the policy file: %v", err)
	}
	if after := e.storeFiles(); fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("store changed")
	}
	e.mustPull(img.Ref, "fine")
}

func TestMalformedGlobalPolicyFailsPulls(t *testing.T) {
	e := newEnv(t)
	e.setGlobal(`{"default":[]`)
	img := fixtures.PushImage(t, e.ref("app/x:1"), 1024)
	if _, err := e.pull(img.Ref, ""); err == nil || !strings.Contains(err.Error(), e.global) {
		t.Fatalf("pull under malformed global policy: %v", err)
	}
}

func TestPathTrickNamespaceIsInvalidArgument(t *testing.T) {
	e := newEnv(t)
	writeFile(t, filepath.Join(e.dir, "evil.json"), acceptAll)
	e.setGlobal(rejectAll)
	img := fixtures.PushImage(t, e.ref("app/x:1"), 1024)
	for _, ns := range []string{"../evil", "a/b", "..", "x/../../evil", strings.Repeat("n", 64)} {
		_, err := e.pull(img.Ref, ns)
		if !errors.Is(err, policy.ErrInvalidNamespace) {
			t.Errorf("namespace %q: %v", ns, err)
		}
	}
}

func TestSigstoreKeySignatures(t *testing.T) {
	e := newEnv(t)
	key, otherKey := fixtures.NewSigstoreKey(t), fixtures.NewSigstoreKey(t)
	img := fixtures.PushImage(t, e.ref("app/keyed:1"), 1024)
	key.Sign(t, img.Ref)
	e.setNamespace("wrong-key", anyDocker(keyReq(otherKey.PublicKeyPath, matchRepo)))
	e.mustReject(img.Ref, "wrong-key", "cryptographic signature verification failed")
	e.setNamespace("right-key", anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	e.mustPull(img.Ref, "right-key")
}

func TestKeylessSignatures(t *testing.T) {
	e := newEnv(t)
	kl := fixtures.NewKeyless(t, "https://issuer.crivet.test", "dev@crivet.test")
	foreign := fixtures.NewKeyless(t, "https://issuer.crivet.test", "dev@crivet.test")
	img := fixtures.PushImage(t, e.ref("app/keyless:1"), 1024)
	kl.Sign(t, img.Ref)

	for _, tc := range []struct{ ns, req, want string }{
		{"wrong-email", keylessReq(kl.CAPath, kl.Issuer, "wrong@mail.com", kl.RekorPublicKeyPath, matchRepo), `Required email "wrong@mail.com" not found (got ["dev@crivet.test"])`},
		{"wrong-issuer", keylessReq(kl.CAPath, "https://other.issuer.test", kl.Email, kl.RekorPublicKeyPath, matchRepo), `Unexpected Fulcio OIDC issuer "https://issuer.crivet.test"`},
		{"wrong-ca", keylessReq(foreign.CAPath, kl.Issuer, kl.Email, kl.RekorPublicKeyPath, matchRepo), "certificate"},
		{"wrong-rekor", keylessReq(kl.CAPath, kl.Issuer, kl.Email, foreign.RekorPublicKeyPath, matchRepo), "SET"},
	} {
		e.setNamespace(tc.ns, anyDocker(tc.req))
		e.mustReject(img.Ref, tc.ns, tc.want)
	}
	e.setNamespace("right", anyDocker(keylessReq(kl.CAPath, kl.Issuer, kl.Email, kl.RekorPublicKeyPath, matchRepo)))
	e.mustPull(img.Ref, "right")
}

func TestGPGSimpleSigningWithLookaside(t *testing.T) {
	e := newEnv(t)
	g, other := fixtures.NewGPGKey(t), fixtures.NewGPGKey(t)
	img := fixtures.PushImage(t, e.ref("app/gpg:1"), 1024)
	g.Sign(t, img.Ref, e.lookaside)
	unsigned := fixtures.PushImage(t, e.ref("app/gpg:unsigned"), 1024)

	e.setGlobal(anyDocker(gpgReq(g.PublicKeyPath)))
	e.mustReject(unsigned.Ref, "", noSignature)
	e.setNamespace("other-key", anyDocker(gpgReq(other.PublicKeyPath)))
	e.mustReject(img.Ref, "other-key", "signature")
	e.mustPull(img.Ref, "")
}

func TestSignedIdentityRules(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	elsewhere := e.ref("elsewhere/app:1")
	img := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	key.Sign(t, img.Ref, fixtures.WithIdentity(elsewhere))
	own := fixtures.PushImage(t, e.ref("team/own:1"), 1024)
	key.Sign(t, own.Ref)

	for _, tc := range []struct {
		ns, identity, ref string
		ok                bool
	}{
		{"match-repo", matchRepo, img.Ref, false},
		{"repo-digest-or-exact", `{"type":"matchRepoDigestOrExact"}`, img.Ref, false},
		{"exact-other", fmt.Sprintf(`{"type":"exactReference","dockerReference":%q}`, e.ref("team/app:1")), img.Ref, false},
		{"exact", fmt.Sprintf(`{"type":"exactReference","dockerReference":%q}`, elsewhere), img.Ref, true},
		{"remap", fmt.Sprintf(`{"type":"remapIdentity","prefix":%q,"signedPrefix":%q}`, e.reg.Addr+"/team", e.reg.Addr+"/elsewhere"), img.Ref, true},
		{"own-exact", `{"type":"matchRepoDigestOrExact"}`, own.Ref, true},
	} {
		e.setNamespace(tc.ns, anyDocker(keyReq(key.PublicKeyPath, tc.identity)))
		if tc.ok {
			e.mustPull(tc.ref, tc.ns)
		} else {
			e.mustReject(tc.ref, tc.ns, "not accepted")
		}
	}
}

func TestTamperedAndMalformedSignaturesAreRejected(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	kl := fixtures.NewKeyless(t, "", "")
	a := fixtures.PushImage(t, e.ref("app/t:a"), 1024)
	b := fixtures.PushImage(t, e.ref("app/t:b"), 1024)
	key.Sign(t, a.Ref)
	fixtures.CopySigstoreAttachment(t, e.reg, "app/t", a.ManifestDigest, b.ManifestDigest)
	e.setNamespace("key", anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	e.mustReject(b.Ref, "key", "does not match")

	for _, drop := range []string{"dev.sigstore.cosign/bundle", "dev.sigstore.cosign/certificate"} {
		c := fixtures.PushImage(t, e.ref("app/m:"+strings.ReplaceAll(filepath.Base(drop), ".", "-")), 1024)
		fixtures.PushMalformedSigstoreAttachment(t, c.DigestRef(), kl, drop)
		e.setNamespace("keyless", anyDocker(keylessReq(kl.CAPath, kl.Issuer, kl.Email, kl.RekorPublicKeyPath, matchRepo)))
		e.mustReject(c.Ref, "keyless", "")
	}
}

func TestRegistriesDWithoutSigstoreAttachmentsFindsNoSignature(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	img := fixtures.PushImage(t, e.ref("app/x:1"), 1024)
	key.Sign(t, img.Ref)
	writeFile(t, filepath.Join(e.regD, "default.yaml"), "default-docker:\n  use-sigstore-attachments: false\n")
	e.setGlobal(anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	e.mustReject(img.Ref, "", noSignature)
}

func TestIndexPolicyAppliesToTheNodesPlatform(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	idxRef := e.ref("app/multi:1")
	idxDigest, per := fixtures.PushIndex(t, idxRef, "linux/amd64", "linux/arm64")
	e.setGlobal(anyDocker(keyReq(key.PublicKeyPath, matchRepo)))

	// Only the other platform is signed: this node (amd64) must refuse.
	key.Sign(t, per["linux/arm64"].DigestRef())
	e.mustReject(idxRef, "", noSignature)
	// The index's own signature does not vouch for the instance either.
	key.Sign(t, idxRef, fixtures.IndexOnly())
	e.mustReject(idxRef, "", noSignature)

	key.Sign(t, per["linux/amd64"].DigestRef())
	img := e.mustPull(idxRef, "")
	if img.ID != per["linux/amd64"].ConfigDigest {
		t.Fatalf("pulled %s, want the amd64 image %s", img.ID, per["linux/amd64"].ConfigDigest)
	}
	if img.Record.IndexDigest.String() != idxDigest || img.Record.ManifestDigest.String() != per["linux/amd64"].ManifestDigest {
		t.Errorf("record %+v", img.Record)
	}
	wantDigest := e.reg.Addr + "/app/multi@" + idxDigest
	if !contains(img.RepoDigests, wantDigest) {
		t.Errorf("repo digests %v lack %s", img.RepoDigests, wantDigest)
	}
	// Found by the index digest it was pulled through.
	if got, err := e.svc.Get(wantDigest); err != nil || got.ID != img.ID {
		t.Errorf("Get(%s) = %v, %v", wantDigest, got, err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestPolicyEditTakesEffectOnNextPull(t *testing.T) {
	e := newEnv(t)
	img := fixtures.PushImage(t, e.ref("app/x:1"), 1024)
	e.setNamespace("team", acceptAll)
	e.mustPull(img.Ref, "team")
	e.setNamespace("team", rejectAll)
	e.mustReject(img.Ref, "team", "is rejected by policy")
	e.setNamespace("team", acceptAll)
	e.mustPull(img.Ref, "team")
}

func TestConcurrentIdenticalPullsAreDoneOnce(t *testing.T) {
	e := newEnv(t)
	img := fixtures.PushImage(t, e.ref("app/big:1"), 8<<20)
	const n = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			got, err := e.pull(img.Ref, "team")
			errs[i] = err
			if got != nil {
				ids[i] = got.ID
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != img.ConfigDigest {
			t.Fatalf("pull %d: %s, %v", i, ids[i], errs[i])
		}
	}
	if got := len(e.decisions.all()); got != 1 {
		t.Fatalf("%d concurrent identical pulls made %d policy decisions, want 1: %s", n, got, e.decisions)
	}
}

func TestEveryDecisionIsLoggedOnce(t *testing.T) {
	e := newEnv(t)
	e.setNamespace("strict", rejectAll)
	img := fixtures.PushImage(t, e.ref("app/x:1"), 1024)
	e.mustPull(img.Ref, "")
	e.mustReject(img.Ref, "strict", "rejected")
	logs := e.decisions.all()
	if len(logs) != 2 {
		t.Fatalf("decisions logged: %s", e.decisions)
	}
	if logs[0]["outcome"] != "allowed" || logs[1]["outcome"] != "rejected" || logs[1]["namespace"] != "strict" ||
		logs[1]["policy"] != filepath.Join(e.nsDir, "strict.json") || logs[1]["digest"] != img.ManifestDigest || logs[1]["reason"] == "" {
		t.Errorf("decision records: %s", e.decisions)
	}
}

func TestRemoveRacingPullKeepsStoreConsistent(t *testing.T) {
	e := newEnv(t)
	img := fixtures.PushImage(t, e.ref("app/race:1"), 2<<20)
	for range 5 {
		var wg sync.WaitGroup
		var pullErr error
		wg.Go(func() { _, pullErr = e.pull(img.Ref, "") })
		wg.Go(func() {
			for range 20 {
				if err := e.svc.Remove(img.Ref); err != nil && !errors.Is(err, ErrNotFound) {
					t.Errorf("remove: %v", err)
				}
			}
		})
		wg.Wait()
		if pullErr != nil {
			t.Fatalf("pull failed while racing removals: %v", pullErr)
		}
		// Whatever won, the store answers consistently.
		list, err := e.svc.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range list {
			if i.Record == nil || i.Record.ManifestDigest == "" {
				t.Fatalf("image without record after race: %+v", i)
			}
		}
	}
	e.mustPull(img.Ref, "")
}

func TestRegistryUnreachableIsRegistryUnavailable(t *testing.T) {
	e := newEnv(t)
	img := fixtures.PushImage(t, e.ref("app/x:1"), 1024)
	e.reg.Stop()
	_, err := e.pull(img.Ref, "")
	if !errors.Is(err, ErrRegistryUnavailable) {
		t.Fatalf("pull from a stopped registry: %v", err)
	}
}

func TestStoredImageReverifiesOffline(t *testing.T) {
	e := newEnv(t)
	kl := fixtures.NewKeyless(t, "", "")
	img := fixtures.PushImage(t, e.ref("app/off:1"), 1024)
	kl.Sign(t, img.Ref)
	e.setNamespace("keyless", anyDocker(keylessReq(kl.CAPath, kl.Issuer, kl.Email, kl.RekorPublicKeyPath, matchRepo)))
	pulled := e.mustPull(img.Ref, "keyless")
	e.reg.Stop() // everything below is local

	check := func(ns, identity string) error { return e.verifyStored(pulled, ns, identity) }
	if err := check("keyless", img.Ref); err != nil {
		t.Fatalf("offline re-verification of a correctly signed image: %v", err)
	}
	e.setNamespace("other-email", anyDocker(keylessReq(kl.CAPath, kl.Issuer, "x@y.z", kl.RekorPublicKeyPath, matchRepo)))
	var rej *policy.Rejection
	if err := check("other-email", img.Ref); !errorsAs(err, &rej) || !strings.Contains(err.Error(), `Required email "x@y.z" not found`) {
		t.Fatalf("offline check with another email: %v", err)
	}
	// The same bytes claimed under another repository do not carry the signature's identity.
	if err := check("keyless", e.ref("someone/else:1")); !errorsAs(err, &rej) {
		t.Fatalf("offline check under another identity: %v", err)
	}
}

func TestRestartRemovesLayersOfAnInterruptedPull(t *testing.T) {
	e := newEnv(t)
	img := e.mustPull(fixtures.PushImage(t, e.ref("app/keep:1"), 1024).Ref, "")
	// What a pull killed after committing a layer but before creating its
	// image leaves: a complete layer nobody owns.
	orphan, _, err := e.svc.Storage().PutLayer("", "", nil, "", false, nil, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	_ = e.svc.Close()
	os.WriteFile(filepath.Join(e.root, "tmp", "partial-blob"), []byte("x"), 0o600)
	e.open()
	if _, err := e.svc.Storage().Layer(orphan.ID); err == nil {
		t.Fatal("orphan layer survived a restart")
	}
	if _, err := os.Stat(filepath.Join(e.root, "tmp", "partial-blob")); err == nil {
		t.Fatal("temporary pull data survived a restart")
	}
	if got, err := e.svc.Get(img.ID); err != nil || got.ID != img.ID {
		t.Fatalf("image lost across restart: %v", err)
	}
}

func TestPullWithCredentials(t *testing.T) {
	e := newEnv(t)
	img := fixtures.PushImage(t, e.ref("private/app:1"), 1024)
	e.reg.RequireBasicAuth("alice", "s3cret")
	if _, err := e.pull(img.Ref, ""); err == nil {
		t.Fatal("pulled from an authenticated registry without credentials")
	}
	for name, auth := range map[string]*Auth{
		"username/password": {Username: "alice", Password: "s3cret"},
		"auth field":        {Auth: base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))},
	} {
		got, err := e.svc.Pull(context.Background(), PullRequest{Ref: img.Ref, Auth: auth})
		if err != nil || got.ID != img.ConfigDigest {
			t.Fatalf("%s: %v", name, err)
		}
		if err := e.svc.Remove(img.Ref); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.Pull(context.Background(), PullRequest{Ref: img.Ref, Auth: &Auth{Username: "alice", Password: "wrong"}}); err == nil {
		t.Fatal("wrong password accepted")
	}
	// The node's global auth file serves pulls that carry no credentials.
	authFile := filepath.Join(e.dir, "auth.json")
	writeFile(t, authFile, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, e.reg.Addr, base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))))
	_ = e.svc.Close()
	e.svc = nil
	e.authFile = authFile
	e.open()
	if _, err := e.pull(img.Ref, ""); err != nil {
		t.Fatalf("pull with the global auth file: %v", err)
	}
}

func TestMovedTagFindsTheNewImage(t *testing.T) {
	e := newEnv(t)
	ref := e.ref("app/moving:1")
	first := fixtures.PushImage(t, ref, 1024)
	e.mustPull(ref, "")
	second := fixtures.PushImage(t, ref, 1024) // the tag moves
	e.mustPull(ref, "")
	got, err := e.svc.Get(ref)
	if err != nil || got.ID != second.ConfigDigest {
		t.Fatalf("Get(%s) = %v, %v; want the new image %s (old %s)", ref, got, err, second.ConfigDigest, first.ConfigDigest)
	}
	old, err := e.svc.Get(first.ConfigDigest)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range old.Record.References {
		if r.Resolved == ref && !r.Formerly {
			t.Fatalf("the old image still claims %s", ref)
		}
	}
}

// The copy reads the manifest the policy admitted from the source the
// verify steps opened: the registry is asked for it once, and a tag moved
// between the decision and the copy changes nothing.
func TestPullCopiesTheManifestItVerifiedFetchingItOnce(t *testing.T) {
	e := newEnv(t)
	ref := e.ref("app/once:1")
	first := fixtures.PushImage(t, ref, 1024)
	var mu sync.Mutex
	var manifestGets []string
	pings := 0
	moved := false
	e.reg.OnRequest(func(r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.UserAgent(), "containers/") {
			return // not the library (the test's own push)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.URL.Path == "/v2/":
			pings++
		case strings.Contains(r.URL.Path, "/manifests/"):
			manifestGets = append(manifestGets, r.URL.Path)
		case strings.Contains(r.URL.Path, "/blobs/") && !moved:
			// The first blob is fetched after the decision: move the tag.
			moved = true
			mu.Unlock()
			fixtures.PushImage(t, ref, 1024)
			mu.Lock()
		}
	})
	img := e.mustPull(ref, "")
	e.reg.OnRequest(func(*http.Request) {})
	if img.ID != first.ConfigDigest {
		t.Fatalf("pulled %s, want the image verified before the tag moved (%s)", img.ID, first.ConfigDigest)
	}
	mu.Lock()
	defer mu.Unlock()
	if !moved {
		t.Fatal("the tag was never moved: the test did not test")
	}
	var top []string
	for _, p := range manifestGets {
		if strings.HasSuffix(p, "/manifests/1") || strings.HasSuffix(p, "/manifests/"+first.ManifestDigest) {
			top = append(top, p)
		}
	}
	if len(top) != 1 {
		t.Fatalf("the image's manifest was fetched %d times, want once: %q", len(top), manifestGets)
	}
	if pings != 1 {
		t.Fatalf("the registry was pinged %d times, want once", pings)
	}
}

func TestConcurrentRemovesOfOneImageAllSucceedOrFindItGone(t *testing.T) {
	e := newEnv(t)
	for round := range 5 {
		img := e.mustPull(fixtures.PushImage(t, e.ref(fmt.Sprintf("app/rm:%d", round)), 1024).Ref, "")
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = e.svc.Remove(img.ID) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatalf("concurrent remove: %v", err)
			}
		}
		if _, err := e.svc.Get(img.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("image still there: %v", err)
		}
	}
}

// The blob-info cache is memory-only (no SQLite file, no syncs), and a
// pull still reuses the layers the store already has: the store finds
// them by digest.
func TestSharedLayersAreReusedWithoutABlobInfoCacheFile(t *testing.T) {
	e := newEnv(t)
	baseLayer := fixtures.BombTar(t, 1<<20)
	base := fixtures.PushLayers(t, e.ref("shared/base:1"), baseLayer)
	app := fixtures.PushLayers(t, e.ref("shared/app:1"), baseLayer, fixtures.BombTar(t, 2<<20))
	e.mustPull(base.Ref, "")
	e.mustPull(app.Ref, "")
	var reused []string
	for _, r := range e.decisions.find("pull finished") {
		reused = append(reused, r["reference"]+"="+r["layers_reused"])
	}
	if got, want := strings.Join(reused, " "), base.Ref+"=0 "+app.Ref+"=1"; got != want {
		t.Fatalf("layers reused: %s, want %s", got, want)
	}
	filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "blob-info-cache") {
			t.Errorf("blob-info cache file %s", path)
		}
		return nil
	})
}
