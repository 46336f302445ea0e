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
	requirements   []string // types of the requirements of the identity's scope
	err            error
	duration       time.Duration
	attrs          []any // stage-specific log attributes: cached, ...
}

// outcome: allowed; rejected (a policy decision against the image); or
// error (the policy could not be evaluated: a file, a key, a registry).
func (d decision) outcome() string {
	var rej *policy.Rejection
	switch {
	case d.err == nil:
		return "allowed"
	case errors.As(d.err, &rej), errors.Is(d.err, policy.ErrRefused):
		return "rejected"
	}
	return "error"
}

func (s *Service) logPolicyDecision(d decision) {
	attrs := []any{"stage", d.stage, "namespace", d.namespace, "reference", d.reference, "identity", d.identity,
		"image", d.image, "digest", d.digest}
	if d.pol != nil {
		attrs = append(attrs, "policy", d.pol.Path, "policy_digest", d.pol.Digest.String())
	}
	if d.pod != "" || d.container != "" {
		attrs = append(attrs, "pod", d.pod, "container", d.container)
	}
	attrs = append(attrs, d.attrs...)
	outcome := d.outcome()
	s.obs.Decision(d.stage, d.namespace, outcome, d.reason(), d.duration)
	attrs = append(attrs, "duration", d.duration, "outcome", outcome)
	if d.err != nil {
		s.log.Warn("signature policy decision", append(attrs, "reason", d.err.Error())...)
	} else {
		s.log.Info("signature policy decision", attrs...)
	}
	rec := audit.Record{Time: time.Now().UTC(), Stage: d.stage, Namespace: d.namespace, Pod: d.pod, Container: d.container,
		Reference: d.reference, Resolved: d.identity, Image: d.image, Digest: d.digest,
		Requirements: d.requirements, Outcome: outcome, DurationMS: float64(d.duration.Microseconds()) / 1000}
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

// requirementTypes names the requirements that decided for identity.
func requirementTypes(pol *policy.Policy, identity string) []string {
	named, err := reference.ParseNormalizedNamed(identity)
	if err != nil {
		return nil
	}
	ref, err := docker.NewReference(named)
	if err != nil {
		return nil
	}
	return pol.RequirementTypes(ref)
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
	start := time.Now()
	stage := StageCreate
	if req.Volume {
		stage = StageImageVolume
	}
	d := decision{stage: stage, namespace: req.Namespace, pod: req.Pod, container: req.Container, reference: req.UserRef,
		image: req.Image.ID, digest: req.Image.Record.manifestDigest().String()}
	pol, err := s.cfg.Policies.ForNamespace(req.Namespace)
	if err != nil {
		if !errors.Is(err, policy.ErrInvalidNamespace) {
			d.err, d.duration = err, time.Since(start)
			s.logPolicyDecision(d)
		}
		return Admission{}, err
	}
	adm, err := s.Admit(ctx, req.Image, req.UserRef, pol)
	d.pol, d.err, d.identity = pol, err, adm.Identity
	if adm.Identity != "" {
		d.requirements = requirementTypes(pol, adm.Identity)
	}
	d.duration = time.Since(start)
	d.attrs = []any{"cached", adm.Cached, "identity_from_record", adm.FromRecord}
	s.logPolicyDecision(d)
	return adm, err
}
