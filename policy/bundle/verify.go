package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
)

const (
	// MaxBundleSize bounds the bundle bytes Verify parses. A cosign
	// signature bundle is a few kilobytes (a certificate, a small statement,
	// one or two log entries); a megabyte leaves room for long chains and
	// several timestamps while keeping a hostile registry from making the
	// node parse arbitrary amounts of JSON.
	MaxBundleSize = 1 << 20

	// CosignSignPredicateType is the predicateType of a cosign v3 image
	// signature (cosign sign --new-bundle-format). Attestations (cosign
	// attest) use the same bundle artifact type with other predicate types
	// and must not pass for signatures (GHSA-w6c6-c85g-mmv6).
	CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"

	inTotoStatementV1 = "https://in-toto.io/Statement/v1"

	// maxTrustedRootSize and maxKeyFileSize bound the files a requirement
	// names; the public-good trusted root is under 20 KiB.
	maxTrustedRootSize = 8 << 20
	maxKeyFileSize     = 1 << 20
)

// Result describes a bundle that admitted the image.
type Result struct {
	Identity Identity
	// Subject is the digest the statement signs that admitted the image:
	// the manifest digest or one of the alsoAccept digests.
	Subject digest.Digest
	// ViaAlsoAccept is true when Subject is not the manifest digest itself
	// (e.g. the signature covers the index the manifest was chosen from).
	ViaAlsoAccept bool
	PredicateType string
	// MediaType is the bundle's, e.g. application/vnd.dev.sigstore.bundle.v0.3+json.
	MediaType string
	// TransparencyLog lists the verified log entries. Entries are verified
	// only when the requirement asks for at least one; otherwise they are
	// neither checked nor listed.
	TransparencyLog []LogEntry
	// Timestamps are the verified RFC 3161 timestamps.
	Timestamps []time.Time
}

// Identity is who signed.
type Identity struct {
	// Key is the key-based signer: the key file, or "keyData", and the
	// key's position in it when it holds several ("/etc/k.pem#1").
	Key string `json:",omitempty"`
	// Keyless signer: the certificate's subject alternative name and OIDC
	// issuer, and the Fulcio extensions a policy may match.
	SAN                 string `json:",omitempty"`
	Issuer              string `json:",omitempty"`
	SourceRepositoryURI string `json:",omitempty"`
	SourceRepositoryRef string `json:",omitempty"`
	BuildSignerURI      string `json:",omitempty"`
}

// LogEntry is one verified transparency-log entry.
type LogEntry struct {
	LogID string // hex
	Index int64
	// Kind is the entry type and version, e.g. "dsse/0.0.1" (Rekor v1) or
	// "hashedrekord/0.0.2" (Rekor v2).
	Kind    string
	RekorV2 bool
	// IntegratedTime is the log's time for Rekor v1 entries; Rekor v2
	// entries have none.
	IntegratedTime time.Time `json:",omitzero"`
}

// Verify checks one bundle against the requirement for the image whose
// manifest digest is manifestDigest. It reads the files the requirement
// names now, so a rotated key or trusted root is used at once; callers
// verifying many bundles under one requirement use Prepare.
//
// alsoAccept lists other digests the statement's subject may name instead.
// The rule: the subject must be the per-platform manifest digest the node
// is about to run, or the digest of the index that manifest was chosen
// from (cosign signs whatever digest it was given, and signing a
// multi-arch image's index is common). Callers pass only digests the
// manifest was actually resolved through; anything else would let a
// signature for one image admit another.
func Verify(ctx context.Context, req *Requirement, bundleJSON []byte, manifestDigest digest.Digest, alsoAccept []digest.Digest) (Result, error) {
	p, err := Prepare(req)
	if err != nil {
		return Result{}, err
	}
	return p.Verify(ctx, bundleJSON, manifestDigest, alsoAccept)
}

// Prepared is a requirement with its keys and trusted root loaded and its
// verifiers built; it is immutable and safe for concurrent use.
type Prepared struct {
	tlog        int // effective thresholds
	timestamps  int
	keys        []trustedKey // key-based only
	verifiers   []*verify.Verifier
	identity    *verify.CertificateIdentity // keyless only
	rekorLogs   map[string]*root.TransparencyLog
	fingerprint digest.Digest
	warnings    []string
}

type trustedKey struct {
	source string
	hints  []string // forms a bundle's public-key hint may take for this key
}

// Prepare validates the requirement and loads what it names. An invalid
// requirement is a *Rejection with ReasonPolicyUnreadable, a file that
// cannot be read or parsed one with ReasonKeyUnreadable: no image is
// admitted under a requirement that cannot be evaluated.
//
// The files are read at every call, so a rotated key or trusted root is
// used at once; what is built from them (the parsed trusted root, the
// keys, the verifiers) is kept by fingerprint, which covers the
// requirement and the files' content, and reused while they are the same.
func Prepare(req *Requirement) (*Prepared, error) {
	if err := req.Validate(); err != nil {
		return nil, reject(ReasonPolicyUnreadable, err)
	}
	contents := map[string][]byte{}
	if req.TrustedRootPath != "" {
		data, err := readBounded(req.TrustedRootPath, maxTrustedRootSize)
		if err != nil {
			return nil, reject(ReasonKeyUnreadable, fmt.Errorf("trusted root: %w", err))
		}
		contents[req.TrustedRootPath] = data
	}
	for _, path := range req.keyFiles() {
		data, err := readBounded(path, maxKeyFileSize)
		if err != nil {
			return nil, reject(ReasonKeyUnreadable, fmt.Errorf("key: %w", err))
		}
		contents[path] = data
	}
	markers := map[string]string{}
	for path, data := range contents {
		markers[path] = digest.FromBytes(data).String()
	}
	fp := fingerprint(req, markers)
	if p := preparedCache.get(fp); p != nil {
		return p, nil
	}
	p, err := prepare(req, contents)
	if err != nil {
		return nil, err
	}
	p.fingerprint = fp
	preparedCache.put(fp, p)
	return p, nil
}

// prepare builds a Prepared for req from contents, the files it names.
func prepare(req *Requirement, contents map[string][]byte) (*Prepared, error) {
	// The thresholds are copied out: the requirement's pointers stay the
	// caller's, and a Prepared must not change under it.
	p := &Prepared{tlog: req.TransparencyLogThreshold(), timestamps: req.TimestampThreshold()}

	var tm root.TrustedMaterial = &root.BaseTrustedMaterial{}
	if req.TrustedRootPath != "" {
		tr, err := root.NewTrustedRootFromJSON(contents[req.TrustedRootPath])
		if err != nil {
			return nil, reject(ReasonKeyUnreadable, fmt.Errorf("trusted root %s: %w", req.TrustedRootPath, err))
		}
		tm = tr
		p.rekorLogs = tr.RekorLogs()
		p.warnings = rootWarnings(req, tr)
	}

	opts := verifierOptions(req)

	if req.KeyBased() {
		keys, err := loadKeys(req, contents)
		if err != nil {
			return nil, reject(ReasonKeyUnreadable, err)
		}
		for _, k := range keys {
			v, err := verify.NewVerifier(&keyMaterial{TrustedMaterial: tm, key: k.key}, opts...)
			if err != nil {
				return nil, reject(ReasonKeyUnreadable, fmt.Errorf("key %s: %w", k.source, err))
			}
			p.keys = append(p.keys, k.trustedKey)
			p.verifiers = append(p.verifiers, v)
		}
	} else {
		id, err := certificateIdentity(req)
		if err != nil {
			return nil, reject(ReasonKeyUnreadable, err)
		}
		p.identity = &id
		v, err := verify.NewVerifier(tm, opts...)
		if err != nil {
			return nil, reject(ReasonKeyUnreadable, err)
		}
		p.verifiers = []*verify.Verifier{v}
	}
	return p, nil
}

// maxPrepared bounds the cache of Prepared requirements: a node has a
// handful of requirements, and each rotation of a file adds one entry.
const maxPrepared = 64

// preparedCache keeps Prepared requirements by fingerprint. A Prepared
// is immutable, so one serves every caller with the same requirement
// and file contents.
var preparedCache = &prepCache{m: map[digest.Digest]*Prepared{}}

type prepCache struct {
	mu sync.Mutex
	m  map[digest.Digest]*Prepared
}

func (c *prepCache) get(fp digest.Digest) *Prepared {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[fp]
}

func (c *prepCache) put(fp digest.Digest, p *Prepared) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxPrepared {
		// Entries of rotated files are never asked for again; starting
		// over costs one rebuild per live requirement.
		clear(c.m)
	}
	c.m[fp] = p
}

// Warnings are what the trusted root lacks for the requirement: a
// requirement that no bundle can satisfy (crivet policy lint shows them).
// They never widen what is admitted: such bundles are refused.
func (p *Prepared) Warnings() []string { return p.warnings }

// rootWarnings compares the trusted root tr with what req needs of it.
func rootWarnings(req *Requirement, tr *root.TrustedRoot) []string {
	var out []string
	path := req.TrustedRootPath
	if !req.KeyBased() && len(tr.FulcioCertificateAuthorities()) == 0 {
		out = append(out, fmt.Sprintf("trusted root %s has no certificate authority: every keyless bundle will be refused", path))
	}
	if n := req.TransparencyLogThreshold(); n > 0 && len(tr.RekorLogs()) == 0 {
		out = append(out, fmt.Sprintf("trusted root %s has no transparency log, and transparencyLog is %d: every bundle will be refused", path, n))
	}
	if n := req.TimestampThreshold(); n > 0 && len(tr.TimestampingAuthorities()) == 0 {
		out = append(out, fmt.Sprintf("trusted root %s has no timestamp authority, and timestamps is %d: every bundle will be refused", path, n))
	}
	if n := req.CertificateTransparencyThreshold(); !req.KeyBased() && n > 0 && len(tr.CTLogs()) == 0 {
		out = append(out, fmt.Sprintf("trusted root %s has no certificate transparency log, and certificateTransparency is %d: every keyless bundle will be refused", path, n))
	}
	return out
}

// Fingerprint identifies the requirement and the file contents this
// Prepared was built from; see Requirement.Fingerprint.
func (p *Prepared) Fingerprint() digest.Digest { return p.fingerprint }

// verifierOptions turns the evidence thresholds into sigstore-go options.
func verifierOptions(req *Requirement) []verify.VerifierOption {
	tl, ts := req.TransparencyLogThreshold(), req.TimestampThreshold()
	var opts []verify.VerifierOption
	if tl > 0 {
		opts = append(opts, verify.WithTransparencyLog(tl))
	}
	if ct := req.CertificateTransparencyThreshold(); ct > 0 {
		opts = append(opts, verify.WithSignedCertificateTimestamps(ct))
	}
	switch {
	case ts > 0:
		// The verified timestamps are also the times the certificate
		// (keyless) or key validity (key-based) is checked at.
		opts = append(opts, verify.WithSignedTimestamps(ts))
	case !req.KeyBased():
		// A certificate is checked at an observed time: a Rekor v1
		// entry's integrated time (tl ≥ 1, Validate guarantees it), or a
		// timestamp the bundle happens to carry.
		opts = append(opts, verify.WithObserverTimestamps(1))
	default:
		// A key has no validity window here: no time is needed.
		opts = append(opts, verify.WithNoObserverTimestamps())
	}
	return opts
}

func certificateIdentity(req *Requirement) (verify.CertificateIdentity, error) {
	san, err := verify.NewSANMatcher(req.Subject, req.SubjectRegExp)
	if err != nil {
		return verify.CertificateIdentity{}, fmt.Errorf("subjectRegExp: %w", err)
	}
	iss, err := verify.NewIssuerMatcher(req.Issuer, req.IssuerRegExp)
	if err != nil {
		return verify.CertificateIdentity{}, fmt.Errorf("issuerRegExp: %w", err)
	}
	id, err := verify.NewCertificateIdentity(san, iss, certificate.Extensions{
		SourceRepositoryURI: req.SourceRepositoryURI,
		SourceRepositoryRef: req.SourceRepositoryRef,
		BuildSignerURI:      req.BuildSignerURI,
	})
	if err != nil {
		return verify.CertificateIdentity{}, fmt.Errorf("certificate identity: %w", err)
	}
	return id, nil
}

// keyMaterial is the trusted root (or nothing) plus one trusted key. Each
// requirement key gets its own verifier: sigstore-go asks for a key by the
// bundle's hint, which is an unauthenticated label the signer chose, so
// the hint never selects what is trusted.
type keyMaterial struct {
	root.TrustedMaterial
	key *root.ExpiringKey
}

func (m *keyMaterial) PublicKeyVerifier(string) (root.TimeConstrainedVerifier, error) {
	return m.key, nil
}

type loadedKey struct {
	trustedKey
	key *root.ExpiringKey
}

func loadKeys(req *Requirement, contents map[string][]byte) ([]loadedKey, error) {
	var out []loadedKey
	add := func(source string, pemData []byte) error {
		keys, err := parsePublicKeys(source, pemData)
		if err != nil {
			return err
		}
		out = append(out, keys...)
		return nil
	}
	for _, path := range req.keyFiles() {
		if err := add(path, contents[path]); err != nil {
			return nil, err
		}
	}
	if req.KeyData != "" {
		data, err := base64.StdEncoding.DecodeString(req.KeyData)
		if err != nil {
			return nil, fmt.Errorf("keyData: %w", err)
		}
		if err := add("keyData", data); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parsePublicKeys reads one or more PEM PUBLIC KEY blocks and nothing
// else: a private key or a certificate pasted by mistake is an error, not
// silently skipped.
func parsePublicKeys(source string, data []byte) ([]loadedKey, error) {
	var out []loadedKey
	rest := data
	for i := 0; ; i++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%s: PEM block %d is %q, want PUBLIC KEY", source, i, block.Type)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %w", source, i, err)
		}
		v, err := signature.LoadDefaultVerifier(pub)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %w", source, i, err)
		}
		name := source
		if i > 0 || len(bytes.TrimSpace(rest)) > 0 {
			name = fmt.Sprintf("%s#%d", source, i)
		}
		sum := sha256.Sum256(block.Bytes)
		out = append(out, loadedKey{
			trustedKey: trustedKey{source: name, hints: []string{
				base64.StdEncoding.EncodeToString(sum[:]), hex.EncodeToString(sum[:]),
			}},
			key: root.NewExpiringKey(v, time.Time{}, time.Time{}),
		})
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%s: data after the last PEM block", source)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM PUBLIC KEY block", source)
	}
	return out, nil
}

// readBounded reads a regular file of at most limit bytes. A FIFO or
// device named by mistake would block the open or never end.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

// statement is the part of an in-toto statement this package reads before
// the signature is checked.
type statement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string `json:"predicateType"`
}

// Verify checks one bundle; see the package function Verify for the rule
// on manifestDigest and alsoAccept.
//
// Checks of the statement's content run first, on the payload as the
// bundle states it: they can only refuse, never admit, and they spare the
// signature work for a bundle that could not be admitted anyway. The
// admission itself rests on sigstore-go's verification, which checks the
// signature over that payload and the subject digest again, and on the
// verified statement it returns.
func (p *Prepared) Verify(ctx context.Context, bundleJSON []byte, manifestDigest digest.Digest, alsoAccept []digest.Digest) (Result, error) {
	res, err := p.verify(ctx, bundleJSON, manifestDigest, alsoAccept)
	if err != nil {
		slog.DebugContext(ctx, "sigstore bundle refused", "manifest", manifestDigest, "reason", ReasonOf(err), "error", err)
		return Result{}, err
	}
	slog.DebugContext(ctx, "sigstore bundle verified", "manifest", manifestDigest, "subject", res.Subject,
		"key", res.Identity.Key, "san", res.Identity.SAN, "issuer", res.Identity.Issuer,
		"tlogEntries", len(res.TransparencyLog), "timestamps", len(res.Timestamps))
	return res, nil
}

func (p *Prepared) verify(ctx context.Context, bundleJSON []byte, manifestDigest digest.Digest, alsoAccept []digest.Digest) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	candidates := append([]digest.Digest{manifestDigest}, alsoAccept...)
	for _, d := range candidates {
		if err := d.Validate(); err != nil {
			return Result{}, fmt.Errorf("digest %q to verify: %w", d, err)
		}
	}

	if len(bytes.TrimSpace(bundleJSON)) == 0 {
		return Result{}, reject(ReasonNoSignature, errors.New("empty bundle"))
	}
	if len(bundleJSON) > MaxBundleSize {
		return Result{}, reject(ReasonInvalidSignature, fmt.Errorf("bundle is %d bytes, more than the %d accepted", len(bundleJSON), MaxBundleSize))
	}
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return Result{}, reject(ReasonInvalidSignature, fmt.Errorf("malformed bundle: %w", err))
	}
	env := b.GetDsseEnvelope()
	if env == nil {
		return Result{}, reject(ReasonNotASignature, errors.New("the bundle holds a message signature over a blob, not a DSSE envelope around an in-toto statement as cosign signs images"))
	}
	if env.GetPayloadType() != sgbundle.IntotoMediaType {
		return Result{}, reject(ReasonNotASignature, fmt.Errorf("DSSE payload type %q is not %q", env.GetPayloadType(), sgbundle.IntotoMediaType))
	}
	// A key-signed bundle under a keyless requirement, or the reverse, is
	// "not signed by anyone trusted" whatever else is wrong with it.
	if hint := b.GetVerificationMaterial().GetPublicKey(); p.identity != nil && hint != nil {
		return Result{}, reject(ReasonUntrustedKey, fmt.Errorf("the bundle is signed with a key (hint %q); the requirement trusts certificates", hint.GetHint()))
	} else if p.identity == nil && hint == nil {
		return Result{}, reject(ReasonUntrustedKey, errors.New("the bundle is signed with a certificate; the requirement trusts keys"))
	}
	var st statement
	if err := json.Unmarshal(env.GetPayload(), &st); err != nil {
		return Result{}, reject(ReasonInvalidSignature, fmt.Errorf("in-toto statement: %w", err))
	}
	if err := checkStatementKind(st.Type, st.PredicateType); err != nil {
		return Result{}, err
	}
	chosen, ok := matchSubject(st, candidates)
	if !ok {
		return Result{}, reject(ReasonDigestMismatch, fmt.Errorf("the statement signs %s, not %s", subjectList(st), candidateList(candidates)))
	}
	raw, err := hex.DecodeString(chosen.Encoded())
	if err != nil {
		return Result{}, fmt.Errorf("digest %s: %w", chosen, err)
	}

	var policyOpt verify.PolicyOption
	if p.identity != nil {
		policyOpt = verify.WithCertificateIdentity(*p.identity)
	} else {
		policyOpt = verify.WithKey()
	}
	policy := verify.NewPolicy(verify.WithArtifactDigest(chosen.Algorithm().String(), raw), policyOpt)

	var (
		vr      *verify.VerificationResult
		keyUsed string
		errs    []error
		classes []string
	)
	for _, i := range p.keyOrder(b.GetVerificationMaterial().GetPublicKey().GetHint()) {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		r, err := p.verifiers[i].Verify(&b, policy)
		if err == nil {
			vr = r
			if p.identity == nil {
				keyUsed = p.keys[i].source
			}
			break
		}
		classes = append(classes, classifyLibrary(err, p.identity == nil))
		if p.identity == nil {
			err = fmt.Errorf("key %s: %w", p.keys[i].source, err)
		}
		errs = append(errs, err)
	}
	if vr == nil {
		return Result{}, reject(pickClass(classes), errors.Join(errs...))
	}

	// The admission rests on the verified statement, parsed by the
	// library: a payload that two JSON parsers read differently must not
	// pass the early checks with one reading and be signed with another.
	if vr.Statement == nil {
		return Result{}, reject(ReasonInvalidSignature, errors.New("verified bundle has no statement"))
	}
	if err := checkStatementKind(vr.Statement.GetType(), vr.Statement.GetPredicateType()); err != nil {
		return Result{}, err
	}
	if !verifiedSubjectHas(vr, chosen) {
		return Result{}, reject(ReasonDigestMismatch, fmt.Errorf("the verified statement does not sign %s", chosen))
	}

	res := Result{
		Subject:       chosen,
		ViaAlsoAccept: chosen != manifestDigest,
		PredicateType: vr.Statement.GetPredicateType(),
		MediaType:     b.GetMediaType(),
	}
	res.Identity.Key = keyUsed
	if vr.Signature != nil && vr.Signature.Certificate != nil {
		c := vr.Signature.Certificate
		res.Identity.SAN = c.SubjectAlternativeName
		res.Identity.Issuer = c.Extensions.Issuer
		res.Identity.SourceRepositoryURI = c.Extensions.SourceRepositoryURI
		res.Identity.SourceRepositoryRef = c.Extensions.SourceRepositoryRef
		res.Identity.BuildSignerURI = c.Extensions.BuildSignerURI
	}
	for _, ts := range vr.VerifiedTimestamps {
		if ts.Type == "TimestampAuthority" {
			res.Timestamps = append(res.Timestamps, ts.Timestamp)
		}
	}
	if p.tlog > 0 {
		res.TransparencyLog, err = p.verifiedEntries(&b)
		if err != nil {
			return Result{}, reject(ReasonInvalidSignature, err)
		}
	}
	// The library enforces both thresholds; checking the counts we report
	// keeps the Result and the decision from ever disagreeing.
	if n, want := len(res.TransparencyLog), p.tlog; n < want {
		return Result{}, reject(ReasonMissingEvidence, fmt.Errorf("%d verified transparency-log entries, %d required", n, want))
	}
	if n, want := len(res.Timestamps), p.timestamps; n < want {
		return Result{}, reject(ReasonMissingEvidence, fmt.Errorf("%d verified timestamps, %d required", n, want))
	}
	return res, nil
}

// checkStatementKind refuses statements that are not cosign signatures.
func checkStatementKind(typ, predicateType string) error {
	if typ != inTotoStatementV1 {
		return reject(ReasonNotASignature, fmt.Errorf("statement type %q is not %q", typ, inTotoStatementV1))
	}
	if predicateType != CosignSignPredicateType {
		return reject(ReasonNotASignature, fmt.Errorf("predicateType %q is not the cosign signature type %q: an attestation is not a signature", predicateType, CosignSignPredicateType))
	}
	return nil
}

// matchSubject returns the first candidate (the manifest first) that a
// subject of the statement names.
func matchSubject(st statement, candidates []digest.Digest) (digest.Digest, bool) {
	for _, c := range candidates {
		for _, s := range st.Subject {
			if v, ok := s.Digest[c.Algorithm().String()]; ok && strings.EqualFold(v, c.Encoded()) {
				return c, true
			}
		}
	}
	return "", false
}

func verifiedSubjectHas(vr *verify.VerificationResult, d digest.Digest) bool {
	for _, s := range vr.Statement.GetSubject() {
		if v, ok := s.GetDigest()[d.Algorithm().String()]; ok && strings.EqualFold(v, d.Encoded()) {
			return true
		}
	}
	return false
}

func subjectList(st statement) string {
	var out []string
	for _, s := range st.Subject {
		for alg, v := range s.Digest {
			out = append(out, alg+":"+v)
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, ", ")
}

func candidateList(c []digest.Digest) string {
	s := make([]string, len(c))
	for i, d := range c {
		s[i] = d.String()
	}
	return strings.Join(s, " or ")
}

// keyOrder tries first the keys whose fingerprint is the bundle's hint, so
// the usual case is one verification; the others follow, since a hint is
// not required to be any particular fingerprint.
func (p *Prepared) keyOrder(hint string) []int {
	order := make([]int, 0, len(p.verifiers))
	var rest []int
	for i := range p.verifiers {
		if p.identity == nil && hint != "" && slices.Contains(p.keys[i].hints, hint) {
			order = append(order, i)
		} else {
			rest = append(rest, i)
		}
	}
	return append(order, rest...)
}

// pickClass chooses one class for the failures of all keys: a key that got
// past the signature check to fail on something else says more than the
// keys that simply did not sign.
func pickClass(classes []string) string {
	for _, c := range classes {
		if c != ReasonUntrustedKey {
			return c
		}
	}
	if len(classes) == 0 {
		return ReasonOther
	}
	return ReasonUntrustedKey
}

// verifiedEntries lists the bundle's entries from logs of the trusted
// root: sigstore-go has verified every one of them (a failure on any is
// an error) and skipped the others.
func (p *Prepared) verifiedEntries(b *sgbundle.Bundle) ([]LogEntry, error) {
	entries, err := b.TlogEntries()
	if err != nil {
		return nil, fmt.Errorf("transparency-log entries: %w", err)
	}
	var out []LogEntry
	for _, e := range entries {
		id := hex.EncodeToString([]byte(e.LogKeyID()))
		if _, ok := p.rekorLogs[id]; !ok {
			continue
		}
		tle := e.TransparencyLogEntry()
		le := LogEntry{
			LogID:   id,
			Index:   e.LogIndex(),
			Kind:    tle.GetKindVersion().GetKind() + "/" + tle.GetKindVersion().GetVersion(),
			RekorV2: e.IsRekorV2(),
		}
		if !le.RekorV2 && tle.GetIntegratedTime() > 0 {
			le.IntegratedTime = time.Unix(tle.GetIntegratedTime(), 0).UTC()
		}
		out = append(out, le)
	}
	return out, nil
}
