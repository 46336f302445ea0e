package trust

import (
	"context"
	"errors"
	"time"

	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/image/record"
	"github.com/crivet/crivet/policy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
)

// Decision is one signature-policy decision, at pull, import or create;
// every decision is logged once, in this one shape, by this package, and
// written to the audit log before the RPC that asked for it answers.
type Decision struct {
	Stage          string // StagePull, StageCreate, StageImageVolume or "import"
	Namespace      string
	Pod, Container string
	Reference      string // as the client wrote it
	Identity       string // the reference the image was verified as
	Image          string // the image ID, when known
	Digest         string // the manifest verified
	Pol            *policy.Policy
	Scope          policy.Scope // the scope of the identity, with its requirements' types
	Err            error
	Warned         bool // Err is a refusal the namespace's warn mode admitted
	NoWarn         bool // Err is no verdict (signatures unreachable): never admitted
	Duration       time.Duration
	Attrs          []any // stage-specific log attributes: cached, ...
	// DryRun: a check (crivet policy check) that decides nothing; it is
	// logged at debug level and is no audit record.
	DryRun bool
}

// outcome: allowed; rejected (a policy decision against the image);
// warned (a rejection admitted by warn mode); or error (the policy could
// not be evaluated: a file, a key, a registry).
func (d Decision) outcome() string {
	switch {
	case d.Err == nil:
		return "allowed"
	case d.Warned:
		return "warned"
	case isRefusal(d.Err):
		return "rejected"
	}
	return "error"
}

func isRefusal(err error) bool {
	var rej *policy.Rejection
	return errors.As(err, &rej) || errors.Is(err, policy.ErrRefused)
}

// Settle applies the namespace's mode, then logs and audits the decision
// once. Under warn a refusal is admitted: the decision keeps its reason
// and is marked warned, and nil is returned. An error (a broken policy
// file, an unreachable registry) is never admitted: warn relaxes the
// policy's verdict, not the ability to reach one. A dry run (crivet
// policy check) reports the mode's effect the same way.
func (v *Verifier) Settle(d *Decision) error {
	if d.Err != nil && !d.NoWarn && isRefusal(d.Err) && v.cfg.Policies.ModeFor(d.Namespace) == policy.Warn {
		d.Warned = true
	}
	v.Log(*d)
	if d.Warned {
		return nil
	}
	return d.Err
}

// Log logs and audits d as it stands (no mode applied).
func (v *Verifier) Log(d Decision) {
	if errors.Is(d.Err, policy.ErrInvalidNamespace) {
		// No policy was asked: the request is an invalid argument.
		return
	}
	attrs := []any{"stage", d.Stage, "namespace", d.Namespace, "reference", d.Reference, "identity", d.Identity,
		"image", d.Image, "digest", d.Digest}
	if d.Pol != nil {
		attrs = append(attrs, "policy", d.Pol.Path, "policy_digest", d.Pol.Digest.String())
	}
	if d.Scope.Requirements != nil {
		attrs = append(attrs, "scope", d.Scope.String())
	}
	if d.Pod != "" || d.Container != "" {
		attrs = append(attrs, "pod", d.Pod, "container", d.Container)
	}
	attrs = append(attrs, d.Attrs...)
	outcome := d.outcome()
	if !d.DryRun {
		v.obs.Decision(d.Stage, d.Namespace, outcome, v.reason(d), d.Duration)
	}
	attrs = append(attrs, "duration", d.Duration, "outcome", outcome)
	if d.DryRun {
		if d.Err != nil {
			attrs = append(attrs, "reason", d.Err.Error())
		}
		v.log.Debug("signature policy check (dry run)", attrs...)
		return
	}
	if d.Warned {
		// Same message as every decision, so one query finds them all.
		v.log.Warn("signature policy decision", append(attrs, "mode", "warn", "reason", d.Err.Error())...)
	} else if d.Err != nil {
		v.log.Warn("signature policy decision", append(attrs, "reason", d.Err.Error())...)
	} else {
		v.log.Info("signature policy decision", attrs...)
	}
	rec := audit.Record{Time: time.Now().UTC(), Stage: d.Stage, Namespace: d.Namespace, Pod: d.Pod, Container: d.Container,
		Reference: d.Reference, Resolved: d.Identity, Image: d.Image, Digest: d.Digest,
		Requirements: d.Scope.Requirements, Outcome: outcome, DurationMS: float64(d.Duration.Microseconds()) / 1000}
	if d.Pol != nil {
		rec.Policy, rec.PolicyDigest = d.Pol.Path, d.Pol.Digest.String()
	}
	if d.Err != nil {
		rec.Reason = d.Err.Error()
	}
	if err := v.cfg.Audit.Write(rec); err != nil {
		v.log.Error("audit log write failed", "error", err)
	}
}

// ScopeFor is the scope of pol that decides for identity.
func ScopeFor(pol *policy.Policy, identity string) policy.Scope {
	named, err := reference.ParseNormalizedNamed(identity)
	if err != nil {
		return policy.Scope{}
	}
	ref, err := docker.NewReference(named)
	if err != nil {
		return policy.Scope{}
	}
	return pol.ScopeFor(ref)
}

// AdmitRequest is one create-time check: the stored image a container (or
// an image volume) is about to run, what the client called it, and the
// pod's namespace as crivet stored it at RunPodSandbox.
type AdmitRequest struct {
	Image     *record.Image
	UserRef   string
	Namespace string
	// Pod and Container only label the decision.
	Pod, Container string
	// Volume: the image is mounted as a volume, not run (the decision's
	// stage is StageImageVolume).
	Volume bool
}

// AdmitFor applies the namespace's effective policy (its own file, else
// the global one: always evaluated) to a stored image, offline, and logs
// the decision. This is the only create-time entry to the policy.
func (v *Verifier) AdmitFor(ctx context.Context, req AdmitRequest) (Admission, error) {
	adm, d, _ := v.admission(ctx, req, &v.admitted)
	if err := v.Settle(&d); err != nil {
		return Admission{}, err
	}
	if d.Warned {
		adm.Warning = d.Err.Error()
		if adm.Identity == "" {
			adm.Identity = req.UserRef
		}
	}
	return adm, nil
}

// DryRun is AdmitFor's decision for `crivet policy check --stored`, not
// yet logged (the caller marks it a dry run and settles it), with the
// identities it tried: it neither uses nor fills the admission cache.
func (v *Verifier) DryRun(ctx context.Context, req AdmitRequest) (Admission, Decision, []Identity) {
	return v.admission(ctx, req, nil)
}

// admission is AdmitFor's decision, not yet logged, with the identities
// it tried; cache nil evaluates afresh and remembers nothing.
func (v *Verifier) admission(ctx context.Context, req AdmitRequest, cache *admitCache) (Admission, Decision, []Identity) {
	start := time.Now()
	stage := StageCreate
	if req.Volume {
		stage = StageImageVolume
	}
	d := Decision{Stage: stage, Namespace: req.Namespace, Pod: req.Pod, Container: req.Container, Reference: req.UserRef,
		Image: req.Image.ID, Digest: req.Image.Record.VerifiedManifest().String()}
	pol, err := v.cfg.Policies.ForNamespace(req.Namespace)
	if err != nil {
		d.Err, d.Duration = err, time.Since(start)
		return Admission{}, d, nil
	}
	adm, tried, err := v.admit(ctx, req.Image, req.UserRef, pol, cache)
	d.Pol, d.Err, d.Identity = pol, err, adm.Identity
	if adm.ref != nil {
		d.Scope = pol.ScopeFor(adm.ref)
	}
	d.Duration = time.Since(start)
	d.Attrs = []any{"cached", adm.Cached, "identity_from_record", adm.FromRecord}
	return adm, d, tried
}

// classed marks a refusal whose reason class only this package knows; the
// text and the chain are the wrapped error's.
type classed struct {
	error
	class string
}

func (c *classed) Unwrap() error { return c.error }

// reason classes the decision's error for metrics: the policy's own
// classes first, then what this package knows (the registry, a client
// reference naming another image, nothing to verify).
func (v *Verifier) reason(d Decision) string {
	if d.Err == nil {
		return policy.ReasonNone
	}
	if v.cfg.RegistryError(d.Err) {
		return policy.ReasonRegistry
	}
	if r := policy.ReasonOf(d.Err); r != policy.ReasonOther {
		return r
	}
	var c *classed
	if errors.As(d.Err, &c) {
		return c.class
	}
	return policy.ReasonOther
}
