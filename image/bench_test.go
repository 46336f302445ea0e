package image

import (
	"context"
	"fmt"
	"go.podman.io/image/v5/docker/reference"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/crivet/crivet/metrics"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
)

// Pull of the same 1 MiB image, removed between iterations, under three
// policies: what verification adds to a pull.
func benchmarkPull(b *testing.B, sign func(e *env, ref string) string) {
	e := newEnv(b)
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 1<<20)
	e.setGlobal(sign(e, img.Ref))
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.pull(img.Ref, ""); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := e.svc.Remove(img.Ref); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func BenchmarkPullUnsigned(b *testing.B) {
	benchmarkPull(b, func(*env, string) string { return acceptAll })
}

func BenchmarkPullSigstoreKey(b *testing.B) {
	benchmarkPull(b, func(e *env, ref string) string {
		k := fixtures.NewSigstoreKey(b)
		k.Sign(b, ref)
		return anyDocker(keyReq(k.PublicKeyPath, matchRepo))
	})
}

func BenchmarkPullKeyless(b *testing.B) {
	benchmarkPull(b, func(e *env, ref string) string {
		k := fixtures.NewKeyless(b, "", "")
		k.Sign(b, ref)
		return anyDocker(keylessReq(k.CAPath, k.Issuer, k.Email, k.RekorPublicKeyPath, matchRepo))
	})
}

// The library's own policy check of a pulled keyless image, alone: the
// floor the pull overhead is compared with.
func BenchmarkPolicyCheckKeyless(b *testing.B) {
	e := newEnv(b)
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 1024)
	k := fixtures.NewKeyless(b, "", "")
	k.Sign(b, img.Ref)
	stored := e.mustPull(img.Ref, "")
	e.setGlobal(anyDocker(keylessReq(k.CAPath, k.Issuer, k.Email, k.RekorPublicKeyPath, matchRepo)))
	pol, err := policy.NewStore(e.global, "").Global()
	if err != nil {
		b.Fatal(err)
	}
	named, err := reference.ParseNormalizedNamed(img.Ref)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := e.svc.VerifyStored(context.Background(), stored, named, pol); err != nil {
			b.Fatal(err)
		}
	}
}

// The create-time re-check: cold (every iteration a new policy digest,
// so nothing is cached) and cached; Admit alone, and AdmitFor (the whole
// create-time decision: policy look-up, Admit, log, audit, observer). The
// Metrics variants observe into a real metrics registry, to compare.
func BenchmarkAdmitKeylessCold(b *testing.B)          { benchmarkAdmit(b, false, false, false) }
func BenchmarkAdmitKeylessCached(b *testing.B)        { benchmarkAdmit(b, true, false, false) }
func BenchmarkAdmitKeylessColdMetrics(b *testing.B)   { benchmarkAdmit(b, false, false, true) }
func BenchmarkAdmitKeylessCachedMetrics(b *testing.B) { benchmarkAdmit(b, true, false, true) }

func BenchmarkAdmitForKeylessCold(b *testing.B)          { benchmarkAdmit(b, false, true, false) }
func BenchmarkAdmitForKeylessCached(b *testing.B)        { benchmarkAdmit(b, true, true, false) }
func BenchmarkAdmitForKeylessColdMetrics(b *testing.B)   { benchmarkAdmit(b, false, true, true) }
func BenchmarkAdmitForKeylessCachedMetrics(b *testing.B) { benchmarkAdmit(b, true, true, true) }

func benchmarkAdmit(b *testing.B, cached, full, withMetrics bool) {
	e := newEnv(b)
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 1024)
	k := fixtures.NewKeyless(b, "", "")
	k.Sign(b, img.Ref)
	stored := e.mustPull(img.Ref, "")
	e.setGlobal(anyDocker(keylessReq(k.CAPath, k.Issuer, k.Email, k.RekorPublicKeyPath, matchRepo)))
	pol, err := policy.NewStore(e.global, "").Global()
	if err != nil {
		b.Fatal(err)
	}
	// The daemon's log goes to a file; the test log would keep every record.
	e.svc.log = slog.New(slog.DiscardHandler)
	e.svc.trust = newVerifier(e.svc) // decide with that log and observer
	if withMetrics {
		e.svc.obs = metrics.New()
		e.svc.trust = newVerifier(e.svc) // decide with that log and observer
	}
	req := AdmitRequest{Image: stored, UserRef: img.Ref, Namespace: "team-a", Pod: "p", Container: "c"}
	for b.Loop() {
		if !cached {
			e.svc.trust.ForgetAdmissions()
		}
		if full {
			_, err = e.svc.AdmitFor(context.Background(), req)
		} else {
			_, err = e.svc.Admit(context.Background(), stored, img.Ref, pol)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateRootfsParallel is what a Deployment's replicas starting
// at once cost the image store: container layers of one image created
// (and mounted) from 10 goroutines, as kubelet's parallel pod workers do.
func BenchmarkCreateRootfsParallel(b *testing.B) {
	e := newEnv(b)
	ref := fixtures.PushImage(b, e.ref("bench/rootfs:1"), 1<<20).Ref
	img := e.mustPull(ref, "")
	var n atomic.Int64
	b.SetParallelism(5) // 10 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("bench-rootfs-%d", n.Add(1))
			if _, err := e.svc.CreateRootfs(id, img, nil); err != nil {
				b.Error(err)
				return
			}
			if err := e.svc.RemoveRootfs(id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// The create-time check of a key-signed image, cold (nothing cached):
// a legacy sigstore signature and a cosign v3 bundle side by side.
func BenchmarkAdmitLegacyKeyCold(b *testing.B) {
	e := newEnv(b)
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 1024)
	key := fixtures.NewSigstoreKey(b)
	key.Sign(b, img.Ref)
	stored := e.mustPull(img.Ref, "")
	e.setGlobal(anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	benchmarkAdmitCold(b, e, stored, img.Ref)
}

func BenchmarkAdmitBundleKeyCold(b *testing.B) {
	e := newEnv(b)
	img := fixtures.PushImage(b, e.ref("bench/img:1"), 1024)
	key := fixtures.NewBundleKey(b)
	key.Sign(b, img.DigestRef())
	stored := e.mustPull(img.Ref, "")
	e.setGlobal(anyDocker(bundleReq(key.PublicKeyPath)))
	benchmarkAdmitCold(b, e, stored, img.Ref)
}

func benchmarkAdmitCold(b *testing.B, e *env, stored *Image, ref string) {
	pol, err := policy.NewStore(e.global, "").Global()
	if err != nil {
		b.Fatal(err)
	}
	e.svc.log = slog.New(slog.DiscardHandler)
	e.svc.trust = newVerifier(e.svc) // decide with that log and observer
	for b.Loop() {
		e.svc.trust.ForgetAdmissions()
		if _, err := e.svc.Admit(context.Background(), stored, ref, pol); err != nil {
			b.Fatal(err)
		}
	}
}
