package image

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/crivet/crivet/image/trust"
	"github.com/crivet/crivet/policy"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// CheckResult is what a pull (Check) or a container create (CheckStored)
// would decide, and why; its JSON is `crivet policy check --json`.
type CheckResult struct {
	// Stage is "pull" or "create".
	Stage     string `json:"stage"`
	Namespace string `json:"namespace"`
	// Reference is the image as given.
	Reference string `json:"reference"`
	// Image is the stored image a create would run (create only).
	Image string `json:"image,omitempty"`
	// Identity is the reference the image is verified as.
	Identity string `json:"identity,omitempty"`
	// IdentityFromRecord: the image was named by its ID, so it is verified
	// as a reference it was pulled by (create only).
	IdentityFromRecord bool   `json:"identityFromRecord,omitempty"`
	ManifestDigest     string `json:"manifestDigest,omitempty"`
	IndexDigest        string `json:"indexDigest,omitempty"`
	// Policy is the policy file in force for the namespace.
	Policy       string `json:"policy,omitempty"`
	PolicyDigest string `json:"policyDigest,omitempty"`
	// Scope is the policy scope that applies to Identity, and
	// Requirements the types of its requirements (all must accept).
	Scope        string   `json:"scope,omitempty"`
	Requirements []string `json:"requirements,omitempty"`
	// Step is the step that decided: "policy" for a signature decision;
	// otherwise the step that failed ("registry", "manifest", "limits",
	// "reference", "lookup", "store").
	Step string `json:"step"`
	// Outcome is "allowed", "warned" (refused by the policy, admitted by
	// the namespace's warn mode), "rejected" (by the policy, or by max_layers
	// or max_image_size) or "error" (nothing could be decided: a policy
	// file that cannot be used, an unreachable registry, a missing image).
	Outcome string `json:"outcome"`
	// Reason is the refusal as CRI clients see it after the
	// SignatureValidationFailed prefix, or the error.
	Reason string `json:"reason,omitempty"`
	// Bundles are the Sigstore bundles the check considered, each with
	// its verdict, per reference the image was verified as. A pull lists
	// the bundles found in the registry once the policy looked for them
	// (a scope with a sigstoreBundle requirement whose other requirements
	// refused); a create lists every bundle kept with the image.
	Bundles []BundleCheck `json:"bundles,omitempty"`
}

// Check evaluates what Pull would decide for req, through the same steps
// (namespace policy, candidates, manifest, limits, signature policy), and
// stops before the copy: nothing is stored, no temporary file is made and
// the decision is logged as a dry run, not audited. Identical pulls in
// flight are not joined. The error is what Pull would return.
func (s *Service) Check(ctx context.Context, req PullRequest) (CheckResult, error) {
	rep := &trust.Report{}
	res, err := s.check(trust.WithReport(ctx, rep), req)
	res.Bundles = rep.Checks
	return res, err
}

func (s *Service) check(ctx context.Context, req PullRequest) (CheckResult, error) {
	res := CheckResult{Stage: "pull", Namespace: req.Namespace, Reference: req.Ref, Step: "policy"}
	pol, err := s.policyFor(req, true)
	if err != nil {
		res.setPolicy(nil, err)
		return res.finish(err), err
	}
	res.setPolicy(pol, nil)
	res.Step = "reference"
	warned := ""
	err = s.eachCandidate(req, func(sys *types.SystemContext, named reference.Named) error {
		j, r, err := s.checkCandidate(ctx, sys, req, pol, named)
		if j != nil {
			res.Step = j.step
			res.setIdentity(pol, named)
			warned = j.warned
		}
		res.ManifestDigest, res.IndexDigest = "", ""
		if r != nil {
			res.ManifestDigest, res.IndexDigest = r.m.Digest.String(), r.indexDigest.String()
		}
		return err
	})
	res = res.finish(err)
	if err == nil && warned != "" {
		res.Outcome, res.Reason = "warned", warned
	}
	return res, err
}

// CheckStored evaluates what CreateContainer would decide for a container
// of namespace ns whose image and user_specified_image are both userRef:
// the stored image it names, verified offline under the namespace's
// policy. Unlike AdmitFor it neither uses nor fills the admission cache,
// and its decision is a dry run, not audited.
func (s *Service) CheckStored(ctx context.Context, ns, userRef string) (CheckResult, error) {
	rep := &trust.Report{}
	res, err := s.checkStored(trust.WithReport(ctx, rep), ns, userRef)
	res.Bundles = rep.Checks
	return res, err
}

func (s *Service) checkStored(ctx context.Context, ns, userRef string) (CheckResult, error) {
	res := CheckResult{Stage: "create", Namespace: ns, Reference: userRef, Step: "lookup"}
	img, err := s.Get(userRef)
	if err != nil {
		return res.finish(err), err
	}
	res.Image = img.ID
	if img.Record != nil {
		res.ManifestDigest, res.IndexDigest = img.Record.ManifestDigest.String(), img.Record.IndexDigest.String()
	}
	adm, d, tried := s.trust.DryRun(ctx, AdmitRequest{Image: img, UserRef: userRef, Namespace: ns})
	d.DryRun = true
	settled := s.trust.Settle(&d)
	res.Step = "policy"
	res.setPolicy(d.Pol, d.Err)
	res.IdentityFromRecord = adm.FromRecord
	switch {
	case adm.Identity != "":
		res.Identity = adm.Identity
		res.Scope, res.Requirements = d.Scope.String(), d.Scope.Requirements
	case len(tried) > 0:
		res.Identity = tried[0].Name
		if d.Pol != nil {
			sc := d.Pol.ScopeFor(tried[0].Ref)
			res.Scope, res.Requirements = sc.String(), sc.Requirements
		}
	}
	if d.Warned {
		res = res.finish(nil)
		res.Outcome, res.Reason = "warned", d.Err.Error()
		return res, nil
	}
	return res.finish(settled), settled
}

// setPolicy records the policy in force, or the file that could not be
// used.
func (r *CheckResult) setPolicy(pol *policy.Policy, err error) {
	var fe *policy.FileError
	switch {
	case pol != nil:
		r.Policy, r.PolicyDigest = pol.Path, pol.Digest.String()
	case errors.As(err, &fe):
		r.Policy = fe.Path
	}
}

func (r *CheckResult) setIdentity(pol *policy.Policy, named reference.Named) {
	r.Identity = named.String()
	if pol != nil {
		sc := trust.ScopeFor(pol, r.Identity)
		r.Scope, r.Requirements = sc.String(), sc.Requirements
	}
}

func (r CheckResult) finish(err error) CheckResult {
	var rej *policy.Rejection
	switch {
	case err == nil:
		r.Outcome, r.Reason = "allowed", ""
		return r
	case errors.Is(err, policy.ErrRefused):
		// The refusal's own context (which reference, which image) is the reason.
		r.Outcome, r.Reason = "rejected", err.Error()
	case errors.As(err, &rej):
		r.Outcome, r.Reason = "rejected", rej.Error()
	case errors.Is(err, ErrImageLimit):
		r.Outcome, r.Reason = "rejected", err.Error()
	default:
		r.Outcome, r.Reason = "error", err.Error()
	}
	return r
}

// Checker answers what a daemon would decide, from beside it (the daemon
// may be running on the same root), and changes nothing. Check opens no
// store at all; CheckStored opens the daemon's existing store to read.
type Checker struct {
	s *Service
}

// NewChecker returns a Checker for the daemon configured by cfg.
func NewChecker(cfg Config) (*Checker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Checker{s: newService(cfg, nil)}, nil
}

// Check is Service.Check.
func (c *Checker) Check(ctx context.Context, req PullRequest) (CheckResult, error) {
	return c.s.Check(ctx, req)
}

// CheckStored is Service.CheckStored on the store as it is on disk.
func (c *Checker) CheckStored(ctx context.Context, ns, userRef string) (CheckResult, error) {
	if c.s.store == nil {
		store, err := openExistingStore(c.s.cfg)
		if err != nil {
			res := CheckResult{Stage: "create", Namespace: ns, Reference: userRef, Step: "store"}
			return res.finish(err), err
		}
		c.s.store = store
	}
	return c.s.CheckStored(ctx, ns, userRef)
}

// openExistingStore opens, to read, the store a daemon made. It makes
// none where there is none, and does none of what only the store's owner
// may do: Open's start-up cleaning (a running daemon's pull owns its
// temporary files and fresh layers), making the overlay home a mount
// point, or shutting the store down (which takes the layer store's write
// lock and prunes overlay staging directories); a check process simply
// exits. containers/storage's file locks make reading beside the daemon
// safe.
func openExistingStore(cfg Config) (storage.Store, error) {
	opts := cfg.storeOptions()
	if _, err := os.Stat(opts.GraphRoot); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if cfg.Driver == "overlay" {
		opts.GraphDriverOptions = append(opts.GraphDriverOptions, "overlay.skip_mount_home=true")
	}
	store, err := storage.GetStore(opts)
	if err != nil {
		return nil, fmt.Errorf("open image store in %s (driver %s): %w", cfg.Root, cfg.Driver, err)
	}
	return store, nil
}
