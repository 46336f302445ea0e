package image

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/crivet/crivet/image/referrers"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
)

// What a cosign v3 bundle costs beside today's sigstoreSigned signature,
// side by side, per pull and per cold create-time check (see
// bench_test.go for the legacy and unsigned baselines):
//
//	go test -tags "$TAGS" -p 1 ./image/ -run '^$' -bench 'PullSide|Admit.*(Cold|Cached)$|FindBundles' -benchtime 50x -count 5
//
// The BenchmarkPullSide* pulls share one harness (a 64 KiB image, the
// daemon's log discarded), so their differences are the signature work;
// a pull under a sigstoreBundle requirement also looks for the bundles in
// the registry (BenchmarkFindBundles* alone: those round trips).
func BenchmarkPullSideUnsigned(b *testing.B) {
	benchmarkPullIn(b, newEnv(b), func(*env, fixtures.Image) string { return acceptAll })
}

func BenchmarkPullSideLegacyKey(b *testing.B) {
	benchmarkPullIn(b, newEnv(b), func(e *env, img fixtures.Image) string {
		k := fixtures.NewSigstoreKey(b)
		k.Sign(b, img.Ref)
		return anyDocker(keyReq(k.PublicKeyPath, matchRepo))
	})
}

func BenchmarkPullSideLegacyKeyless(b *testing.B) {
	benchmarkPullIn(b, newEnv(b), func(e *env, img fixtures.Image) string {
		k := fixtures.NewKeyless(b, "", "")
		k.Sign(b, img.Ref)
		return anyDocker(keylessReq(k.CAPath, k.Issuer, k.Email, k.RekorPublicKeyPath, matchRepo))
	})
}

func BenchmarkPullSideBundleKeyReferrersAPI(b *testing.B) {
	benchmarkPullIn(b, bundleEnv(b, true), signBundleKey)
}

func BenchmarkPullSideBundleKeyTagSchema(b *testing.B) {
	benchmarkPullIn(b, bundleEnv(b, false), signBundleKey)
}

func BenchmarkPullSideBundleKeylessReferrersAPI(b *testing.B) {
	benchmarkPullIn(b, bundleEnv(b, true), signBundleKeyless)
}

// benchmarkPullIn pulls the same image, removed between iterations, from
// e's registry (with or without the referrers API) under the policy sign
// returns. Besides the whole pull it reports check-ms/op: the pull's
// signature decision alone (Policy.Check as the decision log times it:
// fetching the signatures or finding the bundles, and verifying them),
// which the noise of a whole pull on a shared machine hides.
func benchmarkPullIn(b *testing.B, e *env, sign func(e *env, img fixtures.Image) string) {
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 64<<10)
	e.setGlobal(sign(e, img))
	var check time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		log := &recordLog{}
		e.svc.log = slog.New(log)
		e.svc.trust = newVerifier(e.svc) // decide with that log and observer
		b.StartTimer()
		if _, err := e.pull(img.Ref, ""); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		decisions := log.find("signature policy decision")
		if len(decisions) != 1 {
			b.Fatalf("%d policy decisions logged, want 1", len(decisions))
		}
		d, err := time.ParseDuration(decisions[0]["duration"])
		if err != nil {
			b.Fatal(err)
		}
		check += d
		if err := e.svc.Remove(img.Ref); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(check.Microseconds())/1000/float64(b.N), "check-ms/op")
}

func signBundleKey(e *env, img fixtures.Image) string {
	k := fixtures.NewBundleKey(e.t)
	k.Sign(e.t, img.DigestRef())
	return anyDocker(bundleReq(k.PublicKeyPath))
}

func signBundleKeyless(e *env, img fixtures.Image) string {
	ca := fixtures.NewBundleCA(e.t)
	ca.Sign(e.t, img.DigestRef(), fixtures.WorkflowIdentity, fixtures.BundleEvidence{TLog: true})
	return anyDocker(keylessBundleReq(ca.TrustedRootPath, fixtures.ReleaseWorkflow, fixtures.GitHubIssuer, ""))
}

// The registry round trips a pull under a sigstoreBundle requirement adds:
// discovery of one bundle for one manifest, nothing verified.
func BenchmarkFindBundlesReferrersAPI(b *testing.B) { benchmarkFindBundles(b, true) }
func BenchmarkFindBundlesTagSchema(b *testing.B)    { benchmarkFindBundles(b, false) }

func benchmarkFindBundles(b *testing.B, withAPI bool) {
	e := bundleEnv(b, withAPI)
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 1024)
	fixtures.NewBundleKey(b).Sign(b, img.DigestRef())
	named, err := reference.ParseNormalizedNamed(img.Ref)
	if err != nil {
		b.Fatal(err)
	}
	sys := e.svc.systemContext()
	d := digest.Digest(img.ManifestDigest)
	for b.Loop() {
		found, err := referrers.Find(context.Background(), sys, named, d)
		if err != nil || len(found) != 1 {
			b.Fatalf("Find = %d bundles, %v", len(found), err)
		}
	}
}

// Cold create-time checks of keyless signatures: the legacy Fulcio one
// is BenchmarkAdmitKeylessCold (bench_test.go).
func BenchmarkAdmitBundleKeylessCold(b *testing.B) {
	e := newEnv(b)
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 1024)
	e.setGlobal(signBundleKeyless(e, img))
	stored := e.mustPull(img.Ref, "")
	benchmarkAdmitCold(b, e, stored, img.Ref)
}

// Cached create-time checks: the admission cache answers, whatever the
// signature kind; the policy and the key or trusted root files are
// fingerprinted.
func BenchmarkAdmitLegacyKeyCached(b *testing.B) {
	e := newEnv(b)
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 1024)
	key := fixtures.NewSigstoreKey(b)
	key.Sign(b, img.Ref)
	stored := e.mustPull(img.Ref, "")
	e.setGlobal(anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	benchmarkAdmitCached(b, e, stored, img.Ref)
}

func BenchmarkAdmitBundleKeyCached(b *testing.B) {
	e := newEnv(b)
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 1024)
	e.setGlobal(signBundleKey(e, img))
	stored := e.mustPull(img.Ref, "")
	benchmarkAdmitCached(b, e, stored, img.Ref)
}

func BenchmarkAdmitBundleKeylessCached(b *testing.B) {
	e := newEnv(b)
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 1024)
	e.setGlobal(signBundleKeyless(e, img))
	stored := e.mustPull(img.Ref, "")
	benchmarkAdmitCached(b, e, stored, img.Ref)
}

func benchmarkAdmitCached(b *testing.B, e *env, stored *Image, ref string) {
	pol, err := policy.NewStore(e.global, "").Global()
	if err != nil {
		b.Fatal(err)
	}
	e.svc.log = slog.New(slog.DiscardHandler)
	e.svc.trust = newVerifier(e.svc) // decide with that log and observer
	e.svc.trust.ForgetAdmissions()
	if _, err := e.svc.Admit(context.Background(), stored, ref, pol); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		a, err := e.svc.Admit(context.Background(), stored, ref, pol)
		if err != nil || !a.Cached {
			b.Fatalf("admit: %+v, %v; want a cached admission", a, err)
		}
	}
}
