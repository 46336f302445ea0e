package bundle

import (
	"errors"
	"strings"
)

// Reason classes of a refused bundle, a small fixed vocabulary for metric
// labels. Where a class of the policy package fits, the string is the same
// (policy.ReasonNoSignature and so on; this package does not import policy
// so that policy can import it). NotASignature and MissingEvidence are
// new: containers-policy.json's requirements have no such outcome, and
// policy.Reasons will need them when this requirement is wired in.
const (
	ReasonNone             = "none"              // admitted
	ReasonNoSignature      = "no_signature"      // no bundle to verify
	ReasonUntrustedKey     = "untrusted_key"     // signed, but by no trusted key or CA
	ReasonKeylessClaims    = "keyless_claims"    // a trusted certificate for another identity, issuer or workflow
	ReasonDigestMismatch   = "digest_mismatch"   // the statement vouches for another manifest
	ReasonInvalidSignature = "invalid_signature" // unparsable, oversize, malformed or a signature that does not verify
	ReasonNotASignature    = "not_a_signature"   // a bundle that is not a cosign image signature (an attestation, a blob signature)
	ReasonMissingEvidence  = "missing_evidence"  // fewer verified log entries, timestamps or SCTs than required
	ReasonKeyUnreadable    = "key_unreadable"    // a key or trusted root the requirement names cannot be used
	ReasonPolicyUnreadable = "policy_unreadable" // the requirement itself is invalid
	ReasonOther            = "other"
)

// Reasons is every class ReasonOf returns.
var Reasons = []string{ReasonNone, ReasonNoSignature, ReasonUntrustedKey, ReasonKeylessClaims, ReasonDigestMismatch,
	ReasonInvalidSignature, ReasonNotASignature, ReasonMissingEvidence, ReasonKeyUnreadable, ReasonPolicyUnreadable, ReasonOther}

// Rejection is a bundle that does not admit the image. Reason is one of
// the classes above; Err is the full story, for logs and audit records.
type Rejection struct {
	Reason string
	Err    error
}

func (r *Rejection) Error() string {
	return "sigstore bundle rejected (" + r.Reason + "): " + r.Err.Error()
}
func (r *Rejection) Unwrap() error { return r.Err }

func reject(reason string, err error) *Rejection { return &Rejection{Reason: reason, Err: err} }

// ReasonOf classes an error returned by Verify; errors that are not a
// *Rejection (a cancelled context, a bad argument) are ReasonOther.
func ReasonOf(err error) string {
	if err == nil {
		return ReasonNone
	}
	var rej *Rejection
	if errors.As(err, &rej) {
		return rej.Reason
	}
	return ReasonOther
}

// libraryReasons class the errors of sigstore-go's Verifier.Verify
// (v1.3.0, pkg/verify/signed_entity.go). Its errors are untyped and
// wrapped with a prefix naming the step that failed, so the prefix is all
// there is to go on; the tests make each class happen, so a library
// upgrade that rewords a step fails them. Earlier entries win.
var libraryReasons = []struct{ text, class string }{
	// Too few entries or timestamps from the trusted root's logs and
	// authorities (absent, or from others): evidence is missing.
	{"not enough verified log entries", ReasonMissingEvidence},
	{"threshold not met", ReasonMissingEvidence},
	{"no valid observer timestamps", ReasonMissingEvidence},
	{"unable to meet threshold", ReasonMissingEvidence}, // SCTs
	// An entry or timestamp from a trusted log or authority that does not
	// check out (not for this signature, a bad proof): the bundle is bad.
	{"failed to verify log inclusion", ReasonInvalidSignature},
	{"failed to verify timestamps", ReasonInvalidSignature},
	{"failed to verify signed certificate timestamp", ReasonInvalidSignature},
	{"failed to verify leaf certificate", ReasonUntrustedKey},
	{"expected key signature, not certificate", ReasonUntrustedKey},
	{"entity was not signed with a certificate", ReasonUntrustedKey},
	{"failed to verify certificate identity", ReasonKeylessClaims},
	{"does not match any digest in statement", ReasonDigestMismatch},
	{"does not match digests in statement", ReasonDigestMismatch},
	{"failed to get signature verifier", ReasonUntrustedKey},
	{"signature time outside of public key validity window", ReasonUntrustedKey},
	{"failed to verify signature", ReasonInvalidSignature},
	{"failed to fetch envelope statement", ReasonInvalidSignature},
	{"failed to summarize certificate", ReasonInvalidSignature},
}

// classifyLibrary classes an error of Verifier.Verify. keyBased says
// whether the verifier held one of the requirement's keys: a signature
// that does not verify under it is "signed by someone else", while under
// a trusted certificate it means the bundle was tampered with.
func classifyLibrary(err error, keyBased bool) string {
	msg := err.Error()
	for _, t := range libraryReasons {
		if strings.Contains(msg, t.text) {
			if t.class == ReasonInvalidSignature && keyBased && strings.HasPrefix(msg, "failed to verify signature") {
				return ReasonUntrustedKey
			}
			return t.class
		}
	}
	return ReasonInvalidSignature
}
