package bundle

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"
)

// The benchmarks time one verification of a valid bundle: through Verify,
// which reads and parses the requirement's files each time, and through a
// Prepared, which a caller verifying many bundles under one requirement
// would hold.

func BenchmarkVerifyKeyBundle(b *testing.B) {
	f := newFixture(b)
	kp, keyPath := f.newKey("release.pub")
	d := randomDigest(b)
	bundleJSON := f.keyBundle(kp, statementFor(b, d, CosignSignPredicateType), evidence{})
	benchVerify(b, &Requirement{Type: RequirementType, KeyPath: keyPath}, bundleJSON, d)
}

func BenchmarkVerifyKeylessBundle(b *testing.B) {
	f := newFixture(b)
	d := randomDigest(b)
	bundleJSON := f.keylessBundle(workflowID, statementFor(b, d, CosignSignPredicateType), evidence{TLog: true, Timestamp: true})
	req := &Requirement{Type: RequirementType, TrustedRootPath: f.trustedRoot, Subject: workflow, Issuer: ghIssuer}
	benchVerify(b, req, bundleJSON, d)
}

func benchVerify(b *testing.B, req *Requirement, bundleJSON []byte, d digest.Digest) {
	ctx := context.Background()
	b.Run("Verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := Verify(ctx, req, bundleJSON, d, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Prepared", func(b *testing.B) {
		p, err := Prepare(req)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := p.Verify(ctx, bundleJSON, d, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
