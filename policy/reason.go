package policy

import (
	"errors"
	"github.com/crivet/crivet/policy/bundle"
	"io/fs"
	"strings"

	"go.podman.io/image/v5/signature"
)

// Reason classes name why a decision went against an image in a small,
// fixed vocabulary, so they can label metrics (a library message holds
// references and digests: unbounded). The full message stays in the log
// and the audit record.
const (
	ReasonNone              = "none"               // allowed
	ReasonNoSignature       = "no_signature"       // the policy wants one, the image has none
	ReasonUntrustedKey      = "untrusted_key"      // signed, but by no trusted key, CA or Rekor key
	ReasonKeylessClaims     = "keyless_claims"     // a trusted certificate whose issuer, email or hostname is not the one required
	ReasonIdentityMismatch  = "identity_mismatch"  // the signature vouches for another reference
	ReasonDigestMismatch    = "digest_mismatch"    // the signature vouches for another manifest
	ReasonInvalidSignature  = "invalid_signature"  // a signature that cannot be parsed or lacks a part
	ReasonPolicyReject      = "policy_reject"      // a "reject" requirement, or no requirement that verifies
	ReasonPolicyUnreadable  = "policy_unreadable"  // the policy file is missing, unreadable or invalid
	ReasonKeyUnreadable     = "key_unreadable"     // a key, CA or Rekor file the policy names cannot be used
	ReasonReferenceMismatch = "reference_mismatch" // the client's reference does not name the image being run
	ReasonNotVerifiable     = "not_verifiable"     // nothing recorded to verify the image as
	ReasonRegistry          = "registry_unavailable"
	ReasonOther             = "other"
)

// Reasons is every class ReasonOf returns.
var Reasons = []string{ReasonNone, ReasonNoSignature, ReasonUntrustedKey, ReasonKeylessClaims, ReasonIdentityMismatch,
	ReasonDigestMismatch, ReasonInvalidSignature, ReasonPolicyReject, ReasonPolicyUnreadable, ReasonKeyUnreadable,
	ReasonReferenceMismatch, ReasonNotVerifiable, ReasonRegistry, ReasonOther,
	bundle.ReasonNotASignature, bundle.ReasonMissingEvidence}

// reasonTexts match the library's messages (go.podman.io/image/v5/signature,
// v5.42): most of its rejections are plain strings, and several signatures'
// reasons are joined into one ("None of the signatures were accepted,
// reasons: …"), so the text is all there is. Earlier entries win.
var reasonTexts = []struct{ text, class string }{
	{"no signature exists", ReasonNoSignature},
	{"Signature for identity", ReasonIdentityMismatch},
	{"Docker reference", ReasonIdentityMismatch}, // simple signing: "Docker reference %q does not match %q"
	{"Signature for digest", ReasonDigestMismatch},
	{"Signature for docker digest", ReasonDigestMismatch},
	{"Required email", ReasonKeylessClaims},
	{"OIDC issuer", ReasonKeylessClaims},
	{"subject hostname", ReasonKeylessClaims},
	{"cryptographic signature verification", ReasonUntrustedKey},
	{"No public key verified", ReasonUntrustedKey},
	{"Key not found for key ID", ReasonUntrustedKey},
	{"signature by key", ReasonUntrustedKey},
	{"leaf certificate failed", ReasonUntrustedKey},
	{"signed by unknown authority", ReasonUntrustedKey},
	{"No public keys imported", ReasonKeyUnreadable},
	{"parsing public key", ReasonKeyUnreadable},
	{"rejected by policy", ReasonPolicyReject},
	{"No signature verification policy found", ReasonPolicyReject},
	{"annotation", ReasonInvalidSignature}, // sigstore: "missing dev.sigstore.cosign/bundle annotation"
}

// ReasonOf classes the error of a decision; nil is ReasonNone. Errors that
// are not the policy's (a registry, the store) are ReasonOther here:
// callers that know them better class them first.
func ReasonOf(err error) string {
	if err == nil {
		return ReasonNone
	}
	var fe *FileError
	if errors.As(err, &fe) {
		return ReasonPolicyUnreadable
	}
	var rej *Rejection
	if !errors.As(err, &rej) {
		return ReasonOther
	}
	// The library reads key, CA and Rekor files at each evaluation and
	// returns their *fs.PathError as is.
	var pe *fs.PathError
	if errors.As(rej.Reason, &pe) {
		return ReasonKeyUnreadable
	}
	msg := rej.Reason.Error()
	if strings.Contains(msg, errNoBundle.Error()) {
		return ReasonNoSignature
	}
	// A sigstoreBundle requirement's refusal carries its own class.
	var brej *bundle.Rejection
	if errors.As(rej.Reason, &brej) {
		return brej.Reason
	}
	for _, t := range reasonTexts {
		if strings.Contains(msg, t.text) {
			return t.class
		}
	}
	var inv signature.InvalidSignatureError
	if errors.As(rej.Reason, &inv) {
		return ReasonInvalidSignature
	}
	var pre signature.PolicyRequirementError
	if errors.As(rej.Reason, &pre) {
		return ReasonPolicyReject
	}
	return ReasonOther
}
