package trust

import (
	"context"
	"strings"
	"time"

	"github.com/crivet/crivet/image/record"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/policy/bundle"
	"github.com/opencontainers/go-digest"
)

// BundleCheck is one Sigstore bundle as `crivet policy check` shows it:
// where it was found, what it signs, who signed it, the evidence that
// was verified and why it was accepted or not.
type BundleCheck struct {
	// VerifiedAs is the reference the image was being verified as when
	// the bundle was considered (a check may try several).
	VerifiedAs string `json:"verifiedAs"`
	// Source is how the registry offered it: "referrers-api" or
	// "tag-schema"; Repository the repository it was found in.
	Source     string `json:"source,omitempty"`
	Repository string `json:"repository,omitempty"`
	// Digest is the bundle's own (sha256 of its bytes), to tell bundles
	// apart.
	Digest string `json:"digest"`
	// FoundFor is the digest the bundle was found as a referrer of, and
	// FoundVia "manifest" or "index" (the index the manifest was chosen
	// from).
	FoundFor string `json:"foundFor,omitempty"`
	FoundVia string `json:"foundVia,omitempty"`
	// Subject is the digest the verified statement signs, and ViaIndex
	// whether it is the index's rather than the manifest's (admitted
	// bundles only: a refused bundle's claims are not shown as facts).
	Subject  string        `json:"subject,omitempty"`
	ViaIndex bool          `json:"viaIndex,omitempty"`
	Signer   *BundleSigner `json:"signer,omitempty"`
	// TransparencyLog and Timestamps are the verified evidence.
	TransparencyLog []BundleLogEntry `json:"transparencyLog,omitempty"`
	Timestamps      []time.Time      `json:"timestamps,omitempty"`
	// Outcome is "admitted" (this bundle satisfies a sigstoreBundle
	// requirement of the scope), "rejected" (it satisfies none: see
	// ReasonClass and Reason) or "not_used" (the policy did not verify
	// it: see Reason).
	Outcome string `json:"outcome"`
	// ReasonClass is the refusal's class (bundle.Reasons: untrusted_key,
	// not_a_signature, ...), rejected bundles only.
	ReasonClass string `json:"reasonClass,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// BundleSigner is who signed a bundle: a key, or a Fulcio certificate's
// identity.
type BundleSigner struct {
	// Key is the key file that verified it ("keyData" for an inline key;
	// "#N" names a key of a file holding several).
	Key                 string `json:"key,omitempty"`
	SAN                 string `json:"san,omitempty"`
	Issuer              string `json:"issuer,omitempty"`
	SourceRepositoryURI string `json:"sourceRepositoryURI,omitempty"`
	SourceRepositoryRef string `json:"sourceRepositoryRef,omitempty"`
	BuildSignerURI      string `json:"buildSignerURI,omitempty"`
}

// BundleLogEntry is one verified transparency-log entry.
type BundleLogEntry struct {
	LogID          string    `json:"logID"`
	Index          int64     `json:"index"`
	Kind           string    `json:"kind"`
	IntegratedTime time.Time `json:"integratedTime,omitzero"`
}

const (
	bundleAdmitted = "admitted"
	bundleRejected = "rejected"
	bundleNotUsed  = "not_used"
)

// notVerified is the reason of a bundle the policy had no cause to
// verify: the library admitted the image on its own, the scope has no
// sigstoreBundle requirement, or the check stopped earlier.
const notVerified = "not verified: the policy decided without sigstore bundles"

// Report collects a check's bundles. It is reached through the check's
// context, so the pull and create paths need no new parameters, and it is
// absent (nil) outside `crivet policy check`.
type Report struct {
	Checks []BundleCheck
}

type reportKey struct{}

// WithReport is ctx carrying r, for the decisions made under it.
func WithReport(ctx context.Context, r *Report) context.Context {
	return context.WithValue(ctx, reportKey{}, r)
}

// ReportFrom is the report ctx carries; nil outside a check.
func ReportFrom(ctx context.Context) *Report {
	r, _ := ctx.Value(reportKey{}).(*Report)
	return r
}

// Add lists kept as seen while verifying the image as verifiedAs, each
// not_used (for notUsed's reason, or notVerified) until the policy
// reports a verdict, and returns the position of the first.
func (r *Report) Add(verifiedAs string, kept []record.KeptBundle, notUsed map[int]string) int {
	base := len(r.Checks)
	for i := range kept {
		k := &kept[i]
		c := BundleCheck{VerifiedAs: verifiedAs, Source: k.Source, Repository: k.Repository,
			Digest: digest.FromBytes(k.Bundle).String(), FoundFor: k.Subject.String(), FoundVia: "index",
			Outcome: bundleNotUsed, Reason: notVerified}
		if k.Subject == k.Manifest {
			c.FoundVia = "manifest"
		}
		if why, ok := notUsed[i]; ok {
			c.Reason = why
		}
		r.Checks = append(r.Checks, c)
	}
	return base
}

// Observer records the policy's verdicts on the bundles listed from
// base: the policy's index i is the bundle at base+used[i].
func (r *Report) Observer(base int, used []int) func(policy.BundleOutcome) {
	return func(o policy.BundleOutcome) {
		if o.Index >= 0 && o.Index < len(used) {
			r.Checks[base+used[o.Index]].record(o)
		}
	}
}

// record fills c from the policy's verdict.
func (c *BundleCheck) record(o policy.BundleOutcome) {
	if o.Err != nil {
		c.Outcome, c.ReasonClass = bundleRejected, bundle.ReasonOf(o.Err)
		// errors.Join puts one requirement's refusal a line.
		c.Reason = strings.ReplaceAll(o.Err.Error(), "\n", "; ")
		return
	}
	res := o.Result
	c.Outcome, c.ReasonClass, c.Reason = bundleAdmitted, "", ""
	c.Subject, c.ViaIndex = res.Subject.String(), res.ViaAlsoAccept
	id := res.Identity
	c.Signer = &BundleSigner{Key: id.Key, SAN: id.SAN, Issuer: id.Issuer, SourceRepositoryURI: id.SourceRepositoryURI,
		SourceRepositoryRef: id.SourceRepositoryRef, BuildSignerURI: id.BuildSignerURI}
	for _, e := range res.TransparencyLog {
		c.TransparencyLog = append(c.TransparencyLog, BundleLogEntry{LogID: e.LogID, Index: e.Index, Kind: e.Kind, IntegratedTime: e.IntegratedTime})
	}
	c.Timestamps = res.Timestamps
}
