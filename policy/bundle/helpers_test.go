package bundle

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	ct "github.com/google/certificate-transparency-go"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509util "github.com/google/certificate-transparency-go/x509util"
	"github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	fulciocert "github.com/sigstore/fulcio/pkg/certificate"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const (
	ghIssuer   = "https://token.actions.githubusercontent.com"
	workflow   = "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1"
	repoURI    = "https://github.com/org/repo"
	devEmail   = "dev@example.com"
	googleIss  = "https://accounts.google.com"
	bundleV03  = "application/vnd.dev.sigstore.bundle.v0.3+json"
	attestType = "https://slsa.dev/provenance/v1"
)

// fixture is a private Sigstore: a Fulcio-like CA made here (so leaf
// certificates can carry URI SANs and Fulcio extensions), plus the
// VirtualSigstore's Rekor log, timestamp authority and its own Fulcio CA.
type fixture struct {
	t         testing.TB
	dir       string
	vs        *ca.VirtualSigstore
	rootCert  *x509.Certificate
	interCert *x509.Certificate
	interKey  *ecdsa.PrivateKey
	// ctKey is a certificate-transparency log the trusted roots trust;
	// strayCTKey one they do not.
	ctKey      *ecdsa.PrivateKey
	strayCTKey *ecdsa.PrivateKey

	// trustedRoot trusts everything above; otherRoot everything but the
	// CA made here.
	trustedRoot string
	otherRoot   string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	must(t, err)
	rootCert, rootKey, err := ca.GenerateRootCa()
	must(t, err)
	interCert, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	must(t, err)
	ctKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	strayCTKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	f := &fixture{t: t, dir: t.TempDir(), vs: vs, rootCert: rootCert, interCert: interCert, interKey: interKey,
		ctKey: ctKey, strayCTKey: strayCTKey}
	ours := &root.FulcioCertificateAuthority{
		Root:                rootCert,
		Intermediates:       []*x509.Certificate{interCert},
		ValidityPeriodStart: time.Now().Add(-time.Hour),
		ValidityPeriodEnd:   time.Now().Add(24 * time.Hour),
		URI:                 "https://fulcio.test",
	}
	f.trustedRoot = f.writeTrustedRoot("trusted_root.json", append([]root.CertificateAuthority{ours}, vs.FulcioCertificateAuthorities()...))
	f.otherRoot = f.writeTrustedRoot("other_root.json", vs.FulcioCertificateAuthorities())
	return f
}

// writeTrustedRoot writes a trusted_root.json. The VirtualSigstore keys its
// Rekor log by the hex log ID but stores that hex text as the ID bytes;
// a trusted_root.json holds the raw ID, so the log is copied with it.
func (f *fixture) writeTrustedRoot(name string, cas []root.CertificateAuthority) string {
	logs := map[string]*root.TransparencyLog{}
	for id, l := range f.vs.RekorLogs() {
		raw, err := hex.DecodeString(id)
		must(f.t, err)
		c := *l
		c.ID = raw
		logs[id] = &c
	}
	ctID := ctLogID(f.t, f.ctKey)
	ctLogs := map[string]*root.TransparencyLog{hex.EncodeToString(ctID[:]): {
		BaseURL:             "https://ctfe.test",
		ID:                  ctID[:],
		ValidityPeriodStart: time.Now().Add(-time.Hour),
		HashFunc:            crypto.SHA256,
		PublicKey:           f.ctKey.Public(),
		SignatureHashFunc:   crypto.SHA256,
	}}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, cas, ctLogs, f.vs.TimestampingAuthorities(), logs)
	must(f.t, err)
	data, err := tr.MarshalJSON()
	must(f.t, err)
	return f.write(name, data)
}

func (f *fixture) write(name string, data []byte) string {
	p := filepath.Join(f.dir, name)
	must(f.t, os.WriteFile(p, data, 0o600))
	return p
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
	data, err := json.Marshal(map[string]any{
		"_type":         inTotoStatementV1,
		"subject":       []any{map[string]any{"digest": map[string]string{d.Algorithm().String(): d.Encoded()}}},
		"predicateType": predicateType,
		"predicate":     map[string]any{},
	})
	must(t, err)
	return data
}

// identity says what a keyless leaf certificate claims.
type identity struct {
	san    string // URI when it parses as an https URL, email otherwise
	issuer string
	ext    fulciocert.Extensions
}

var workflowID = identity{san: workflow, issuer: ghIssuer, ext: fulciocert.Extensions{
	SourceRepositoryURI: repoURI, SourceRepositoryRef: "refs/tags/v1", BuildSignerURI: workflow,
}}

// certProvider is the fixture's CA acting as Fulcio for sign.Bundle.
type certProvider struct {
	f  *fixture
	id identity
	// sct is the CT log key that countersigns the certificate, nil for
	// none.
	sct  *ecdsa.PrivateKey
	leaf *x509.Certificate
}

func (c *certProvider) GetCertificate(_ context.Context, kp sign.Keypair, _ *sign.CertificateProviderOptions) ([]byte, error) {
	ext := c.id.ext
	ext.Issuer = c.id.issuer
	exts, err := ext.Render()
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		NotBefore:       time.Now().Add(-time.Minute),
		NotAfter:        time.Now().Add(10 * time.Minute),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: exts,
	}
	if u, err := url.Parse(c.id.san); err == nil && u.Scheme == "https" {
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{c.id.san}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.f.interCert, kp.GetPublicKey(), c.f.interKey)
	if err != nil {
		return nil, err
	}
	if c.sct != nil {
		// As Fulcio does: the log signs the certificate's TBS without the
		// SCT list (here: the same template issued without it), and the
		// SCT list is then appended as the last extension.
		pre, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		ext, err := sctExtension(c.f.t, c.sct, pre.RawTBSCertificate, c.f.interCert)
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
		der, err = x509.CreateCertificate(rand.Reader, tmpl, c.f.interCert, kp.GetPublicKey(), c.f.interKey)
		if err != nil {
			return nil, err
		}
	}
	c.leaf, err = x509.ParseCertificate(der)
	return der, err
}

func ctLogID(t testing.TB, key *ecdsa.PrivateKey) [32]byte {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	must(t, err)
	return sha256.Sum256(der)
}

// sctExtension is an RFC 6962 embedded SCT list with one SCT by logKey
// over the precertificate tbs issued by issuer.
func sctExtension(t testing.TB, logKey *ecdsa.PrivateKey, tbs []byte, issuer *x509.Certificate) (pkix.Extension, error) {
	sct := ct.SignedCertificateTimestamp{
		SCTVersion: ct.V1,
		LogID:      ct.LogID{KeyID: ctLogID(t, logKey)},
		Timestamp:  uint64(time.Now().UnixMilli()),
	}
	input, err := ct.SerializeSCTSignatureInput(sct, ct.LogEntry{Leaf: ct.MerkleTreeLeaf{
		Version:  ct.V1,
		LeafType: ct.TimestampedEntryLeafType,
		TimestampedEntry: &ct.TimestampedEntry{
			Timestamp: sct.Timestamp,
			EntryType: ct.PrecertLogEntryType,
			PrecertEntry: &ct.PreCert{
				IssuerKeyHash:  sha256.Sum256(issuer.RawSubjectPublicKeyInfo),
				TBSCertificate: tbs,
			},
		},
	}})
	if err != nil {
		return pkix.Extension{}, err
	}
	h := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, logKey, h[:])
	if err != nil {
		return pkix.Extension{}, err
	}
	sct.Signature = ct.DigitallySigned{
		Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA},
		Signature: sig,
	}
	list, err := ctx509util.MarshalSCTsIntoSCTList([]*ct.SignedCertificateTimestamp{&sct})
	if err != nil {
		return pkix.Extension{}, err
	}
	listBytes, err := cttls.Marshal(*list)
	if err != nil {
		return pkix.Extension{}, err
	}
	value, err := asn1.Marshal(listBytes)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}, Value: value}, nil
}

// evidence says what a keyless bundle carries besides the certificate.
type evidence struct {
	tlog      bool // a Rekor v1 dsse entry with inclusion proof and promise
	timestamp bool // an RFC 3161 timestamp from the fixture's TSA
	noSCT     bool // the certificate has no SCT
	straySCT  bool // its SCT is from a CT log the trusted root does not name
}

// keylessBundle signs stmt with a fresh key certified by the fixture CA.
func (f *fixture) keylessBundle(id identity, stmt []byte, ev evidence) []byte {
	f.t.Helper()
	kp, err := sign.NewEphemeralKeypair(nil)
	must(f.t, err)
	cp := &certProvider{f: f, id: id, sct: f.ctKey}
	switch {
	case ev.noSCT:
		cp.sct = nil
	case ev.straySCT:
		cp.sct = f.strayCTKey
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: stmt, PayloadType: "application/vnd.in-toto+json"}, kp,
		sign.BundleOptions{CertificateProvider: cp})
	must(f.t, err)
	sig := pb.GetDsseEnvelope().GetSignatures()[0].GetSig()
	if ev.tlog {
		f.addTlogEntry(pb, cp.leaf, sig)
	}
	if ev.timestamp {
		f.addTimestamp(pb, sig)
	}
	return marshalBundle(f.t, pb)
}

// keyBundle signs stmt with kp, carrying only the key's hint.
func (f *fixture) keyBundle(kp *sign.EphemeralKeypair, stmt []byte, ev evidence) []byte {
	f.t.Helper()
	pb, err := sign.Bundle(&sign.DSSEData{Data: stmt, PayloadType: "application/vnd.in-toto+json"}, kp, sign.BundleOptions{})
	must(f.t, err)
	if ev.tlog {
		f.t.Fatal("the fixture makes log entries for certificates only")
	}
	if ev.timestamp {
		f.addTimestamp(pb, pb.GetDsseEnvelope().GetSignatures()[0].GetSig())
	}
	return marshalBundle(f.t, pb)
}

func (f *fixture) addTimestamp(pb *protobundle.Bundle, sig []byte) {
	tsr, err := f.vs.TimestampResponse(sig)
	must(f.t, err)
	vm := pb.GetVerificationMaterial()
	if vm.TimestampVerificationData == nil {
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{}
	}
	vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps,
		&protocommon.RFC3161SignedTimestamp{SignedTimestamp: tsr})
}

// addTlogEntry logs the envelope in the VirtualSigstore's Rekor (v1, dsse
// 0.0.1) and adds the entry with its inclusion proof and signed entry
// timestamp, as a v0.3 bundle requires.
func (f *fixture) addTlogEntry(pb *protobundle.Bundle, leaf *x509.Certificate, sig []byte) {
	env := pb.GetDsseEnvelope()
	sslEnv := &dsse.Envelope{
		PayloadType: env.GetPayloadType(),
		Payload:     base64.StdEncoding.EncodeToString(env.GetPayload()),
		Signatures:  []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	}
	entry, err := f.vs.GenerateTlogEntry(leaf, sslEnv, sig, time.Now().Unix(), true)
	must(f.t, err)
	tle := proto.Clone(entry.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
	logID, err := f.vs.RekorLogID()
	must(f.t, err)
	set, err := f.vs.RekorSignPayload(tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(tle.GetCanonicalizedBody()),
		IntegratedTime: tle.GetIntegratedTime(),
		LogIndex:       tle.GetLogIndex(),
		LogID:          logID,
	})
	must(f.t, err)
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	vm := pb.GetVerificationMaterial()
	vm.TlogEntries = append(vm.TlogEntries, tle)
}

// rekorV2Bundle is a keyless bundle as cosign v3 makes it against Rekor
// v2: an email SAN from the VirtualSigstore's own Fulcio, a hashedrekord
// 0.0.2 entry (no integrated time) and a timestamp.
func (f *fixture) rekorV2Bundle(email, issuer string, stmt []byte) []byte {
	f.t.Helper()
	te, err := f.vs.AttestHashedRekordV2(email, issuer, stmt)
	must(f.t, err)
	vc, err := te.VerificationContent()
	must(f.t, err)
	sc, err := te.SignatureContent()
	must(f.t, err)
	raw := sc.EnvelopeContent().RawEnvelope()
	payload, err := base64.StdEncoding.DecodeString(raw.Payload)
	must(f.t, err)
	sig, err := base64.StdEncoding.DecodeString(raw.Signatures[0].Sig)
	must(f.t, err)
	tss, err := te.Timestamps()
	must(f.t, err)
	entries, err := te.TlogEntries()
	must(f.t, err)
	pb := &protobundle.Bundle{
		MediaType: bundleV03,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_Certificate{
				Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw},
			},
			TimestampVerificationData: &protobundle.TimestampVerificationData{},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: payload, PayloadType: raw.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	for _, ts := range tss {
		pb.VerificationMaterial.TimestampVerificationData.Rfc3161Timestamps = append(
			pb.VerificationMaterial.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
	}
	for _, e := range entries {
		pb.VerificationMaterial.TlogEntries = append(pb.VerificationMaterial.TlogEntries, e.TransparencyLogEntry())
	}
	return marshalBundle(f.t, pb)
}

func marshalBundle(t testing.TB, pb *protobundle.Bundle) []byte {
	data, err := protojson.Marshal(pb)
	must(t, err)
	return data
}

// newKey makes an ephemeral ECDSA P-256 key and writes its public half.
func (f *fixture) newKey(name string) (*sign.EphemeralKeypair, string) {
	kp, err := sign.NewEphemeralKeypair(nil)
	must(f.t, err)
	pemText, err := kp.GetPublicKeyPem()
	must(f.t, err)
	return kp, f.write(name, []byte(pemText))
}

func intp(i int) *int { return &i }
