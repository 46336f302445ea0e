package bundle_test

import (
	"slices"
	"testing"

	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/policy/bundle"
)

// The classes this package shares with the policy package must be the same
// strings, so one metric counts both kinds of refusal alike.
func TestReasonsMatchPolicy(t *testing.T) {
	shared := map[string]string{
		bundle.ReasonNone:             policy.ReasonNone,
		bundle.ReasonNoSignature:      policy.ReasonNoSignature,
		bundle.ReasonUntrustedKey:     policy.ReasonUntrustedKey,
		bundle.ReasonKeylessClaims:    policy.ReasonKeylessClaims,
		bundle.ReasonDigestMismatch:   policy.ReasonDigestMismatch,
		bundle.ReasonInvalidSignature: policy.ReasonInvalidSignature,
		bundle.ReasonKeyUnreadable:    policy.ReasonKeyUnreadable,
		bundle.ReasonPolicyUnreadable: policy.ReasonPolicyUnreadable,
		bundle.ReasonOther:            policy.ReasonOther,
	}
	for ours, theirs := range shared {
		if ours != theirs {
			t.Errorf("class %q here is %q in policy", ours, theirs)
		}
	}
	// Every class a bundle refusal can have is one the metrics count.
	for _, r := range bundle.Reasons {
		if !slices.Contains(policy.Reasons, r) {
			t.Errorf("class %q is missing from policy.Reasons", r)
		}
	}
}
