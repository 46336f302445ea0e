// Package bundle verifies cosign v3 image signatures: Sigstore bundles
// (application/vnd.dev.sigstore.bundle.v0.3+json) holding a DSSE envelope
// around an in-toto Statement v1 whose subject is the image manifest digest
// and whose predicateType is the cosign signature type.
//
// It is a library: it gets the requirement, the bundle's bytes and the
// digests the caller is about to run, and says whether the bundle admits
// them. It knows nothing of registries, referrers or the image store, and
// never uses the network: keyless trust comes from a trusted_root.json the
// operator placed on the node, never from TUF.
package bundle

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
)

// RequirementType is the "type" of the requirement in a
// containers-policy.json(5) scope.
const RequirementType = "sigstoreBundle"

// Requirement is the operator-facing JSON of a sigstoreBundle policy
// requirement:
//
//	{"type": "sigstoreBundle", "keyPath": "/etc/crivet/keys/release.pub"}
//
//	{"type": "sigstoreBundle",
//	 "trustedRootPath": "/etc/crivet/trusted_root.json",
//	 "subject": "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1",
//	 "issuer": "https://token.actions.githubusercontent.com"}
//
// A requirement is key-based (keyPath, keyPaths or keyData) or keyless
// (trustedRootPath with identity matchers), never both: a bundle carries
// either a public-key hint or a Fulcio certificate, and a requirement that
// accepted both would make the weaker of the two the policy.
type Requirement struct {
	Type string `json:"type"`

	// Key-based: exactly one of the three. Files and data hold one or more
	// PEM "PUBLIC KEY" blocks (ECDSA, RSA or Ed25519); a bundle signed by
	// any of them is accepted.
	KeyPath  string   `json:"keyPath,omitempty"`
	KeyPaths []string `json:"keyPaths,omitempty"`
	// KeyData is the PEM, base64-encoded, as in containers-policy.json(5).
	KeyData string `json:"keyData,omitempty"`

	// TrustedRootPath is a Sigstore trusted_root.json (Fulcio CAs, Rekor
	// logs, timestamp authorities). Required for keyless; for key-based it
	// is needed only to check transparency-log or timestamp evidence.
	TrustedRootPath string `json:"trustedRootPath,omitempty"`

	// Keyless identity. One of Subject (exact) or SubjectRegExp matches the
	// certificate's subject alternative name, whatever its kind (URI for
	// workflows, email for people, other names); one of Issuer or
	// IssuerRegExp matches its OIDC issuer extension. Regular expressions
	// are RE2 and unanchored unless written with ^ and $.
	Subject       string `json:"subject,omitempty"`
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
	Issuer        string `json:"issuer,omitempty"`
	IssuerRegExp  string `json:"issuerRegExp,omitempty"`
	// Optional Fulcio certificate extensions, matched exactly when set.
	SourceRepositoryURI string `json:"sourceRepositoryURI,omitempty"`
	SourceRepositoryRef string `json:"sourceRepositoryRef,omitempty"`
	// BuildSignerURI is the workflow that signed, e.g.
	// https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1.
	BuildSignerURI string `json:"buildSignerURI,omitempty"`

	// Evidence thresholds: how many verified transparency-log entries and
	// RFC 3161 timestamps the bundle must carry. Unset, TransparencyLog is 1
	// for keyless and 0 for key-based, Timestamps is 0.
	//
	// Keyless needs at least one of them ≥ 1: a Fulcio certificate is valid
	// for minutes, and only a log's integrated time or a timestamp
	// authority's token proves the signature was made inside that window.
	// A Rekor v2 entry carries no integrated time: a keyless bundle logged
	// there is admitted only with a verified timestamp besides (the
	// default takes the one cosign adds; timestamps ≥ 1 makes it explicit).
	TransparencyLog *int `json:"transparencyLog,omitempty"`
	Timestamps      *int `json:"timestamps,omitempty"`
	// CertificateTransparency is how many signed certificate timestamps
	// (SCTs, embedded by Fulcio) from the trusted root's CT logs the
	// certificate must carry: keyless only, 1 unless set, as cosign
	// requires by default. A CT log is what lets the identity's owner see
	// certificates issued in their name; 0 is for private Fulcio
	// deployments without one.
	CertificateTransparency *int `json:"certificateTransparency,omitempty"`
}

// maxRequirementSize bounds the requirement JSON; real ones are a few
// hundred bytes, key data included.
const maxRequirementSize = 1 << 20

// ParseRequirement decodes one requirement strictly: unknown fields,
// trailing data and a wrong type are errors, so a misspelt matcher
// ("subjectRegex") cannot silently widen what is admitted. The result is
// validated.
func ParseRequirement(data []byte) (*Requirement, error) {
	if len(data) > maxRequirementSize {
		return nil, fmt.Errorf("sigstoreBundle requirement: %d bytes, more than the %d allowed", len(data), maxRequirementSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Requirement
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("sigstoreBundle requirement: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("sigstoreBundle requirement: trailing data after the JSON object")
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// UnmarshalJSON makes the strict rules hold when a requirement is decoded
// as part of a larger document too.
func (r *Requirement) UnmarshalJSON(data []byte) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil // the json.Unmarshaler convention
	}
	if err := checkFieldNames(data); err != nil {
		return err
	}
	type plain Requirement // no methods: no recursion
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*r = Requirement(p)
	return nil
}

// fieldNames are the requirement's JSON field names, from its tags.
var fieldNames = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[Requirement]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		m[name] = true
	}
	return m
}()

// checkFieldNames refuses what encoding/json lets through: a field given
// twice (the last silently wins, while a reader sees the first) and a
// name in another case ("SubjectRegexp" would be matched to
// subjectRegExp). What the operator reads must be what is enforced.
func checkFieldNames(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if !fieldNames[key] {
			return fmt.Errorf("unknown field %q (names are case-sensitive)", key)
		}
		if seen[key] {
			return fmt.Errorf("field %q given twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}

// KeyBased reports whether the requirement trusts public keys rather than
// Fulcio certificates.
func (r *Requirement) KeyBased() bool {
	return r.KeyPath != "" || len(r.KeyPaths) > 0 || r.KeyData != ""
}

// TransparencyLogThreshold is the effective transparency-log threshold.
func (r *Requirement) TransparencyLogThreshold() int {
	if r.TransparencyLog != nil {
		return *r.TransparencyLog
	}
	if r.KeyBased() {
		return 0
	}
	return 1
}

// TimestampThreshold is the effective RFC 3161 timestamp threshold.
func (r *Requirement) TimestampThreshold() int {
	if r.Timestamps != nil {
		return *r.Timestamps
	}
	return 0
}

// CertificateTransparencyThreshold is the effective SCT threshold.
func (r *Requirement) CertificateTransparencyThreshold() int {
	if r.CertificateTransparency != nil {
		return *r.CertificateTransparency
	}
	if r.KeyBased() {
		return 0
	}
	return 1
}

// keyFiles lists the key files the requirement names, in field order.
func (r *Requirement) keyFiles() []string {
	var out []string
	if r.KeyPath != "" {
		out = append(out, r.KeyPath)
	}
	return append(out, r.KeyPaths...)
}

// Validate checks the requirement's shape. It does not read the files it
// names: they are read at each verification, so a key can be rotated
// without reloading the policy.
func (r *Requirement) Validate() error {
	errs := r.problems()
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid sigstoreBundle requirement: %w", errors.Join(errs...))
}

func (r *Requirement) problems() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if r.Type != RequirementType {
		add("type is %q, want %q", r.Type, RequirementType)
	}
	keySources := 0
	for _, set := range []bool{r.KeyPath != "", r.KeyPaths != nil, r.KeyData != ""} {
		if set {
			keySources++
		}
	}
	if keySources > 1 {
		add("keyPath, keyPaths and keyData are exclusive: use keyPaths for several keys")
	}
	if r.KeyPaths != nil && len(r.KeyPaths) == 0 {
		add("keyPaths is empty")
	}
	for i, p := range r.keyFiles() {
		if p == "" {
			add("keyPaths[%d] is empty", i)
		} else if !strings.HasPrefix(p, "/") {
			// Relative to what? The daemon's working directory is no
			// operator's intent.
			add("key path %q is not absolute", p)
		}
	}
	if r.KeyData != "" {
		if _, err := base64.StdEncoding.DecodeString(r.KeyData); err != nil {
			add("keyData is not base64: %v", err)
		}
	}
	if r.TrustedRootPath != "" && !strings.HasPrefix(r.TrustedRootPath, "/") {
		add("trustedRootPath %q is not absolute", r.TrustedRootPath)
	}

	identity := r.Subject != "" || r.SubjectRegExp != "" || r.Issuer != "" || r.IssuerRegExp != "" ||
		r.SourceRepositoryURI != "" || r.SourceRepositoryRef != "" || r.BuildSignerURI != ""
	if r.Subject != "" && r.SubjectRegExp != "" {
		add("subject and subjectRegExp are exclusive")
	}
	if r.Issuer != "" && r.IssuerRegExp != "" {
		add("issuer and issuerRegExp are exclusive")
	}
	for _, m := range r.regExps() {
		if m.expr == "" {
			continue
		}
		if _, err := regexp.Compile(m.expr); err != nil {
			add("%s %q: %v", m.name, m.expr, err)
		}
	}

	if r.KeyBased() {
		if identity {
			// They would be ignored: a key-signed bundle has no certificate.
			add("identity matchers (subject, issuer, source repository, build signer) apply to keyless signatures, not to keys")
		}
	} else {
		if r.TrustedRootPath == "" {
			add("keyless requirement without trustedRootPath (or give keyPath, keyPaths or keyData for keys)")
		}
		if r.Subject == "" && r.SubjectRegExp == "" {
			add("keyless requirement without subject or subjectRegExp: any certificate from the CA would be accepted")
		}
		if r.Issuer == "" && r.IssuerRegExp == "" {
			add("keyless requirement without issuer or issuerRegExp: any OIDC provider's identity would be accepted")
		}
	}

	if r.TransparencyLog != nil && *r.TransparencyLog < 0 {
		add("transparencyLog is %d, must be 0 or more", *r.TransparencyLog)
	}
	if r.Timestamps != nil && *r.Timestamps < 0 {
		add("timestamps is %d, must be 0 or more", *r.Timestamps)
	}
	if r.CertificateTransparency != nil && *r.CertificateTransparency < 0 {
		add("certificateTransparency is %d, must be 0 or more", *r.CertificateTransparency)
	}
	if r.KeyBased() && r.CertificateTransparencyThreshold() > 0 {
		add("certificateTransparency applies to keyless certificates, not to keys")
	}
	tl, ts := r.TransparencyLogThreshold(), r.TimestampThreshold()
	if !r.KeyBased() && tl < 1 && ts < 1 {
		add("keyless requirement needs transparencyLog ≥ 1 or timestamps ≥ 1: nothing else proves the short-lived certificate was valid when it signed")
	}
	if r.KeyBased() && (tl > 0 || ts > 0) && r.TrustedRootPath == "" {
		add("transparencyLog or timestamps evidence needs trustedRootPath (the logs' and timestamp authorities' keys)")
	}
	return errs
}

// Lint returns warnings about a valid requirement that admits more than
// its author likely meant. They do not stop the requirement from being
// used.
func (r *Requirement) Lint() []string {
	var out []string
	for _, m := range r.regExps() {
		out = append(out, lintRegExp(m.name, m.expr)...)
	}
	if r.KeyBased() && r.TrustedRootPath != "" && r.TransparencyLogThreshold() == 0 && r.TimestampThreshold() == 0 {
		out = append(out, "trustedRootPath is unused: a key-based requirement reads it only for transparencyLog or timestamps evidence")
	}
	if !r.KeyBased() && r.SubjectRegExp != "" && r.SourceRepositoryURI == "" && r.BuildSignerURI == "" &&
		strings.Contains(r.IssuerRegExp+r.Issuer, "token.actions.githubusercontent.com") {
		out = append(out, "subjectRegExp with the GitHub Actions issuer and no sourceRepositoryURI or buildSignerURI: check that the expression cannot match another repository's workflow")
	}
	return out
}

type namedRegExp struct{ name, expr string }

func (r *Requirement) regExps() []namedRegExp {
	return []namedRegExp{{"subjectRegExp", r.SubjectRegExp}, {"issuerRegExp", r.IssuerRegExp}}
}

// probes are SANs and issuers unrelated to any sensible policy: an
// expression matching them all matches nearly anything.
var probes = []string{"", "x", "attacker@example.com", "https://evil.example/.github/workflows/x.yml@refs/heads/main"}

func lintRegExp(name, expr string) []string {
	if expr == "" {
		return nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil // Validate reports it
	}
	var out []string
	all := true
	for _, p := range probes {
		if !re.MatchString(p) {
			all = false
			break
		}
	}
	if all {
		out = append(out, fmt.Sprintf("%s %q matches any value: it restricts nothing", name, expr))
		return out
	}
	if !strings.HasPrefix(expr, "^") || !strings.HasSuffix(expr, "$") {
		out = append(out, fmt.Sprintf("%s %q is not anchored with ^ and $: it matches any value containing a match, e.g. one with a prefix or suffix an attacker chooses", name, expr))
	}
	return out
}
