package image

import (
	"context"
	"errors"
	"time"

	"github.com/crivet/crivet/policy"
)

// decision is one signature-policy decision, at pull or at create; every
// decision is logged once, in this one shape, by this package.
type decision struct {
	stage     string // "pull" or "create"
	namespace string
	reference string // as the client wrote it
	identity  string // the reference the image was verified as
	image     string // the image ID, when known
	digest    string // the manifest verified
	pol       *policy.Policy
	err       error
	attrs     []any // stage-specific: pod, container, cached, ...
}

func (s *Service) logPolicyDecision(d decision) {
	attrs := []any{"stage", d.stage, "namespace", d.namespace, "reference", d.reference, "identity", d.identity,
		"image", d.image, "digest", d.digest}
	if d.pol != nil {
		attrs = append(attrs, "policy", d.pol.Path, "policy_digest", d.pol.Digest.String())
	}
	attrs = append(attrs, d.attrs...)
	if d.err != nil {
		s.log.Warn("signature policy decision", append(attrs, "outcome", "rejected", "reason", d.err.Error())...)
		return
	}
	s.log.Info("signature policy decision", append(attrs, "outcome", "allowed")...)
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
}

// AdmitFor applies the namespace's effective policy (its own file, else
// the global one: always evaluated) to a stored image, offline, and logs
// the decision. This is the only create-time entry to the policy.
func (s *Service) AdmitFor(ctx context.Context, req AdmitRequest) (Admission, error) {
	start := time.Now()
	d := decision{stage: "create", namespace: req.Namespace, reference: req.UserRef, image: req.Image.ID,
		digest: req.Image.Record.manifestDigest().String()}
	pol, err := s.cfg.Policies.ForNamespace(req.Namespace)
	if err != nil {
		if !errors.Is(err, policy.ErrInvalidNamespace) {
			d.err = err
			s.logPolicyDecision(d)
		}
		return Admission{}, err
	}
	adm, err := s.Admit(ctx, req.Image, req.UserRef, pol)
	d.pol, d.err, d.identity = pol, err, adm.Identity
	d.attrs = []any{"pod", req.Pod, "container", req.Container, "cached", adm.Cached, "identity_from_record", adm.FromRecord,
		"duration", time.Since(start)}
	s.logPolicyDecision(d)
	return adm, err
}
