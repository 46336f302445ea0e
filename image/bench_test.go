package image

import (
	"context"
	"testing"

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
	named, _ := e.svc.identityFor(img.Ref, stored)
	for b.Loop() {
		if err := e.svc.VerifyStored(context.Background(), stored, named, pol); err != nil {
			b.Fatal(err)
		}
	}
}

// The create-time re-check: cold (every iteration a new policy digest,
// so nothing is cached) and cached.
func BenchmarkAdmitKeylessCold(b *testing.B)   { benchmarkAdmit(b, false) }
func BenchmarkAdmitKeylessCached(b *testing.B) { benchmarkAdmit(b, true) }

func benchmarkAdmit(b *testing.B, cached bool) {
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
	for b.Loop() {
		if !cached {
			e.svc.admitted = admitCache{}
		}
		if _, err := e.svc.Admit(context.Background(), stored, img.Ref, pol); err != nil {
			b.Fatal(err)
		}
	}
}
