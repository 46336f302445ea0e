package bundle

import (
	"context"
	"errors"
	"testing"
)

// FuzzVerify feeds arbitrary bytes as a bundle. Whatever they are, Verify
// must not panic, must refuse with a *Rejection of a known class, and may
// admit only a bundle that signs the manifest digest asked about. Without
// -fuzz, the seeds run as a plain test.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	d := randomDigest(f)
	valid := fx.keylessBundle(workflowID, statementFor(f, d, CosignSignPredicateType), evidence{TLog: true, Timestamp: true})
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(fx.keylessBundle(workflowID, statementFor(f, d, attestType), evidence{TLog: true}))
	f.Add(fx.rekorV2Bundle(devEmail, googleIss, statementFor(f, d, CosignSignPredicateType)))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))

	p, err := Prepare(keylessReq(fx))
	if err != nil {
		f.Fatal(err)
	}
	known := map[string]bool{}
	for _, r := range Reasons {
		known[r] = true
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := p.Verify(context.Background(), b, d, nil)
		if err == nil {
			if res.Subject != d {
				t.Fatalf("admitted for %s, asked about %s", res.Subject, d)
			}
			return
		}
		var rej *Rejection
		if !errors.As(err, &rej) || !known[rej.Reason] || rej.Reason == ReasonOther {
			t.Fatalf("refusal %v is not a classed *Rejection", err)
		}
	})
}

// FuzzParseRequirement: any requirement the parser accepts is valid and
// can be fingerprinted and linted. The fingerprint is taken without the
// files: fuzzed paths may name anything on the machine.
func FuzzParseRequirement(f *testing.F) {
	f.Add([]byte(`{"type":"sigstoreBundle","keyPath":"/etc/k.pub"}`))
	f.Add([]byte(`{"type":"sigstoreBundle","trustedRootPath":"/t","subjectRegExp":".*","issuer":"https://i"}`))
	f.Add([]byte(`{"type":"sigstoreBundle","keyPaths":[],"timestamps":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRequirement(data)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed but invalid: %v", err)
		}
		_ = r.Lint()
		if fingerprint(r, nil) == "" {
			t.Fatal("empty fingerprint")
		}
	})
}
