package bundle

import (
	"crypto/rand"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/sign"
)

const (
	ghIssuer   = fixtures.GitHubIssuer
	workflow   = fixtures.ReleaseWorkflow
	repoURI    = fixtures.ReleaseRepoURI
	devEmail   = fixtures.DeveloperEmail
	googleIss  = fixtures.GoogleIssuer
	attestType = "https://slsa.dev/provenance/v1"
	bundleV03  = fixtures.BundleMediaType
)

// fixture is the private Sigstore of test/fixtures (a Fulcio-like CA with
// URI SANs and Fulcio extensions, a Rekor log, a timestamp authority),
// bound to one test.
type fixture struct {
	t   testing.TB
	ca  *fixtures.BundleCA
	dir string
	// trustedRoot trusts everything; otherRoot everything but the CA
	// that certifies keylessBundle's certificates.
	trustedRoot string
	otherRoot   string
}

type (
	identity = fixtures.KeylessIdentity
	evidence = fixtures.BundleEvidence
)

var workflowID = fixtures.WorkflowIdentity

func newFixture(t testing.TB) *fixture {
	t.Helper()
	c := fixtures.NewBundleCA(t)
	return &fixture{t: t, ca: c, dir: c.Dir, trustedRoot: c.TrustedRootPath, otherRoot: c.OtherRootPath}
}

func (f *fixture) write(name string, data []byte) string { return f.ca.Write(f.t, name, data) }

func (f *fixture) keylessBundle(id identity, stmt []byte, ev evidence) []byte {
	f.t.Helper()
	return f.ca.KeylessBundle(f.t, id, stmt, ev)
}

func (f *fixture) keyBundle(kp *sign.EphemeralKeypair, stmt []byte, ev evidence) []byte {
	f.t.Helper()
	return f.ca.KeyBundle(f.t, kp, stmt, ev)
}

func (f *fixture) rekorV2Bundle(email, issuer string, stmt []byte) []byte {
	f.t.Helper()
	return f.ca.RekorV2Bundle(f.t, email, issuer, stmt)
}

func (f *fixture) newKey(name string) (*sign.EphemeralKeypair, string) {
	f.t.Helper()
	return f.ca.NewKey(f.t, name)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// randomDigest is a manifest digest nobody signed before.
func randomDigest(t testing.TB) digest.Digest {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	must(t, err)
	return digest.FromBytes(b)
}

// statementFor is the in-toto statement cosign v3 signs for an image.
func statementFor(t testing.TB, d digest.Digest, predicateType string) []byte {
	return fixtures.Statement(t, d, predicateType)
}

func intp(i int) *int { return &i }
