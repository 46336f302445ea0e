package image

import (
	"context"
	"errors"
	"time"

	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/policy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
)

// decision is one signature-policy decision, at pull or at create; every
// decision is logged once, in this one shape, by this package, and written
// to the audit log before the RPC that asked for it answers.
type decision struct {
	stage          string // StagePull, StageCreate or StageImageVolume
	namespace      string
	pod, container string
	reference      string // as the client wrote it
	identity       string // the reference the image was verified as
	image          string // the image ID, when known
	digest         string // the manifest verified
	pol            *policy.Policy
	scope          policy.Scope // the scope of the identity, with its requirements' types
	err            error
	warned         bool // err is a refusal the namespace's warn mode admitted
	noWarn         bool // err is no verdict (signatures unreachable): never admitted
	duration       time.Duration
	attrs          []any // stage-specific log attributes: cached, ...
	// dryRun: a check (crivet policy check) that decides nothing; it is
	// logged at debug level and is no audit record.
	dryRun bool
}

// outcome: allowed; rejected (a policy decision against the image);
// warned (a rejection admitted by warn mode); or error (the policy could
// not be evaluated: a file, a key, a registry).
func (d decision) outcome() string {
	switch {
	case d.err == nil:
		return "allowed"
	case d.warned:
		return "warned"
	case isRefusal(d.err):
		return "rejected"
	}
	return "error"
}

func isRefusal(err error) bool {
	var rej *policy.Rejection
	return errors.As(err, &rej) || errors.Is(err, policy.ErrRefused)
}

// settle applies the namespace's mode, then logs and audits the decision
// once. Under warn a refusal is admitted: the decision keeps its reason
// and is marked warned, and nil is returned. An error (a broken policy
// file, an unreachable registry) is never admitted: warn relaxes the
// policy's verdict, not the ability to reach one. A dry run (crivet
// policy check) reports the mode's effect the same way.
func (s *Service) settle(d *decision) error {
	if d.err != nil && !d.noWarn && isRefusal(d.err) && s.cfg.Policies.ModeFor(d.namespace) == policy.Warn {
		d.warned = true
	}
	s.logPolicyDecision(*d)
	if d.warned {
		return nil
	}
	return d.err
}

func (s *Service) logPolicyDecision(d decision) {
	if errors.Is(d.err, policy.ErrInvalidNamespace) {
		// No policy was asked: the request is an invalid argument.
		return
	}
	attrs := []any{"stage", d.stage, "namespace", d.namespace, "reference", d.reference, "identity", d.identity,
		"image", d.image, "digest", d.digest}
	if d.pol != nil {
		attrs = append(attrs, "policy", d.pol.Path, "policy_digest", d.pol.Digest.String())
	}
	if d.scope.Requirements != nil {
		attrs = append(attrs, "scope", d.scope.String())
	}
	if d.pod != "" || d.container != "" {
		attrs = append(attrs, "pod", d.pod, "container", d.container)
	}
	attrs = append(attrs, d.attrs...)
	outcome := d.outcome()
	if !d.dryRun {
		s.obs.Decision(d.stage, d.namespace, outcome, d.reason(), d.duration)
	}
	attrs = append(attrs, "duration", d.duration, "outcome", outcome)
	if d.dryRun {
		if d.err != nil {
			attrs = append(attrs, "reason", d.err.Error())
		}
		s.log.Debug("signature policy check (dry run)", attrs...)
		return
	}
	if d.warned {
		// Same message as every decision, so one query finds them all.
		s.log.Warn("signature policy decision", append(attrs, "mode", "warn", "reason", d.err.Error())...)
	} else if d.err != nil {
		s.log.Warn("signature policy decision", append(attrs, "reason", d.err.Error())...)
	} else {
		s.log.Info("signature policy decision", attrs...)
	}
	rec := audit.Record{Time: time.Now().UTC(), Stage: d.stage, Namespace: d.namespace, Pod: d.pod, Container: d.container,
		Reference: d.reference, Resolved: d.identity, Image: d.image, Digest: d.digest,
		Requirements: d.scope.Requirements, Outcome: outcome, DurationMS: float64(d.duration.Microseconds()) / 1000}
	if d.pol != nil {
		rec.Policy, rec.PolicyDigest = d.pol.Path, d.pol.Digest.String()
	}
	if d.err != nil {
		rec.Reason = d.err.Error()
	}
	if err := s.cfg.Audit.Write(rec); err != nil {
		s.log.Error("audit log write failed", "error", err)
	}
}

// scopeFor is the scope of pol that decides for identity.
func scopeFor(pol *policy.Policy, identity string) policy.Scope {
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
	Image     *Image
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
func (s *Service) AdmitFor(ctx context.Context, req AdmitRequest) (Admission, error) {
	adm, d, _ := s.admission(ctx, req, &s.admitted)
	if err := s.settle(&d); err != nil {
		return Admission{}, err
	}
	if d.warned {
		adm.Warning = d.err.Error()
		if adm.Identity == "" {
			adm.Identity = req.UserRef
		}
	}
	return adm, nil
}

// admission is AdmitFor's decision, not yet logged, with the identities
// it tried; cache nil evaluates afresh and remembers nothing.
func (s *Service) admission(ctx context.Context, req AdmitRequest, cache *admitCache) (Admission, decision, []identity) {
	start := time.Now()
	stage := StageCreate
	if req.Volume {
		stage = StageImageVolume
	}
	d := decision{stage: stage, namespace: req.Namespace, pod: req.Pod, container: req.Container, reference: req.UserRef,
		image: req.Image.ID, digest: req.Image.Record.VerifiedManifest().String()}
	pol, err := s.cfg.Policies.ForNamespace(req.Namespace)
	if err != nil {
		d.err, d.duration = err, time.Since(start)
		return Admission{}, d, nil
	}
	adm, tried, err := s.admit(ctx, req.Image, req.UserRef, pol, cache)
	d.pol, d.err, d.identity = pol, err, adm.Identity
	if adm.ref != nil {
		d.scope = pol.ScopeFor(adm.ref)
	}
	d.duration = time.Since(start)
	d.attrs = []any{"cached", adm.Cached, "identity_from_record", adm.FromRecord}
	return adm, d, tried
}
