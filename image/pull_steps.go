package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/crivet/crivet/image/trust"
	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// pullJob is one candidate of one pull, or of one check: the state its
// steps share.
type pullJob struct {
	s     *Service
	ctx   context.Context
	sys   *types.SystemContext
	req   PullRequest
	pol   *policy.Policy
	named reference.Named
	w     *pullWatch
	// warned is the reason of a refusal the namespace's warn mode admitted.
	warned string
	// dryRun: a check, which stops before the copy and whose decision is
	// no audit record.
	dryRun bool
	// step is the step running, or the one that failed.
	step string
	// decided is checkPolicy's decision.
	decided *trust.Decision
	// bundles are the Sigstore bundles found for the image (bundles.go).
	bundles bundleSet
}

// checked is the image the policy decides on: the manifest the node will
// run, with the bundles the registry holds for it, found only if the
// policy asks for them.
func (j *pullJob) checked(r *resolved) types.UnparsedImage {
	u, ok := r.unparsed.(*image.UnparsedImage)
	if !ok {
		return r.unparsed
	}
	var subjects []digest.Digest
	if r.indexDigest != "" {
		subjects = append(subjects, r.indexDigest)
	}
	return &trust.AsIdentity{UnparsedImage: u, Ref: u.Reference(), Subjects: subjects,
		Bundles: func(ctx context.Context) ([][]byte, error) {
			kept, err := j.findBundles(ctx, r)
			return trust.BundleBytes(kept), err
		}}
}

// resolved is what the registry said the image is, checked for use.
type resolved struct {
	// unparsed reads the per-platform manifest the node will run.
	unparsed    types.UnparsedImage
	topDigest   digest.Digest // what the reference resolved to (maybe an index)
	indexDigest digest.Digest // the index the manifest was chosen from, if any
	m           *remoteManifest
}

// fail words a failed step: the watch's verdict first (it explains a
// cancelled fetch better than "context canceled"), then an unreachable
// registry, then the step's own error.
func (j *pullJob) fail(stage string, err error) error {
	if cause := context.Cause(j.ctx); cause != nil && (errors.Is(cause, ErrPullStalled) || errors.Is(cause, ErrImageLimit)) {
		return fmt.Errorf("pull %s: %w", j.named, cause)
	}
	if unreachable(err) {
		return fmt.Errorf("pull %s: %w: %w", j.named, ErrRegistryUnavailable, err)
	}
	if stage == "" {
		return fmt.Errorf("pull %s: %w", j.named, err)
	}
	return fmt.Errorf("pull %s: %s: %w", j.named, stage, err)
}

func (j *pullJob) bad(err error) error {
	return fmt.Errorf("pull %s: %w", j.named, &badManifest{err})
}

// openSource opens the image in its registry.
func (j *pullJob) openSource() (types.ImageSource, error) {
	j.step = "registry"
	srcRef, err := docker.NewReference(j.named)
	if err != nil {
		return nil, j.fail("", err)
	}
	src, err := srcRef.NewImageSource(j.ctx, j.sys)
	if err != nil {
		return nil, j.fail("", err)
	}
	return src, nil
}

// verify is what a pull and a check share: the manifest the node will
// run, the limits, and the signature decision on exactly those bytes. r
// is returned as far as it got.
func (j *pullJob) verify(src types.ImageSource) (*resolved, error) {
	j.step = "manifest"
	r, err := j.resolve(src)
	if err != nil {
		return nil, err
	}
	j.step = "limits"
	if err := j.checkLimits(r.m); err != nil {
		return r, err
	}
	j.step = "policy"
	return r, j.checkPolicy(r)
}

// resolve fetches the top manifest and, for an index, the node's
// platform's manifest; every digest and size in them is validated before
// anything uses it.
func (j *pullJob) resolve(src types.ImageSource) (*resolved, error) {
	top, topMIME, err := src.GetManifest(j.ctx, nil)
	if err != nil {
		return nil, j.fail("manifest", err)
	}
	j.w.kick()
	topM, err := validateManifest(top, topMIME)
	if err != nil {
		return nil, j.bad(err)
	}
	r := &resolved{topDigest: topM.Digest, unparsed: image.UnparsedInstance(src, nil)}
	if d, ok := j.named.(reference.Digested); ok && d.Digest() != r.topDigest {
		return nil, j.bad(fmt.Errorf("registry returned manifest %s, not %s", r.topDigest, d.Digest()))
	}
	if topM.List != nil {
		inst, err := topM.List.ChooseInstance(j.sys)
		if err != nil {
			return nil, j.fail("index", err)
		}
		if err := inst.Validate(); err != nil {
			return nil, j.bad(fmt.Errorf("index entry %q: %w", inst, err))
		}
		r.indexDigest = r.topDigest
		// The policy applies to the manifest that will run; the index's
		// own signatures do not vouch for it.
		r.unparsed = image.UnparsedInstance(src, &inst)
	}
	// Through unparsed, so the policy check sees these very bytes.
	instBytes, instMIME, err := r.unparsed.Manifest(j.ctx)
	if err != nil {
		return nil, j.fail("manifest", err)
	}
	j.w.kick()
	if r.m, err = validateManifest(instBytes, instMIME); err != nil {
		return nil, j.bad(err)
	}
	if r.m.List != nil {
		return nil, j.bad(errors.New("image index lists another index"))
	}
	return r, nil
}

// checkLimits refuses, before any blob is fetched, an image whose manifest
// declares more layers or bytes than the node allows.
func (j *pullJob) checkLimits(m *remoteManifest) error {
	if err := checkManifestLimits(j.s.cfg, m); err != nil {
		return fmt.Errorf("pull %s: %w", j.named, err)
	}
	return nil
}

func checkManifestLimits(cfg Config, m *remoteManifest) error {
	if cfg.MaxLayers > 0 && len(m.Layers) > cfg.MaxLayers {
		return &limitError{fmt.Sprintf("image has %d layers, more than max_layers (%d)", len(m.Layers), cfg.MaxLayers)}
	}
	if cfg.MaxImageSize > 0 && m.LayerBytes > cfg.MaxImageSize {
		return tooLarge(cfg.MaxImageSize)
	}
	return nil
}

// checkPolicy is the pull's signature decision, logged once.
func (j *pullJob) checkPolicy(r *resolved) error {
	start := time.Now()
	ctx := j.ctx
	if rep := trust.ReportFrom(ctx); rep != nil {
		// A check lists the bundles found once the policy has looked for
		// them: a pull whose policy never asks fetches none.
		var observe func(policy.BundleOutcome)
		ctx = policy.WithBundleObserver(ctx, func(o policy.BundleOutcome) {
			if observe == nil {
				kept := j.bundles.bundles
				used := make([]int, len(kept))
				for i := range used {
					used[i] = i
				}
				observe = rep.Observer(rep.Add(j.named.String(), kept, nil), used)
			}
			observe(o)
		})
	}
	err := j.pol.Check(ctx, j.checked(r))
	j.w.kick()
	// Signatures that could not be fetched are no verdict a warn mode
	// could admit: the library words them as a rejection all the same.
	offline := err != nil && (unreachable(err) || context.Cause(j.ctx) != nil)
	j.decided = &trust.Decision{Stage: "pull", Namespace: j.req.Namespace, Reference: j.req.Ref, Identity: j.named.String(),
		Digest: r.m.Digest.String(), Pol: j.pol, Scope: trust.ScopeFor(j.pol, j.named.String()), Err: err, Duration: time.Since(start),
		DryRun: j.dryRun, NoWarn: offline}
	err = j.s.trust.Settle(j.decided)
	if j.decided.Warned {
		j.warned = j.decided.Err.Error()
	}
	if err == nil {
		return nil
	}
	if unreachable(err) || context.Cause(j.ctx) != nil {
		// Fetching signatures failed on the network, not on content.
		return j.fail("signatures", err)
	}
	return fmt.Errorf("pull %s: %w", j.named, err)
}

// copyPinned copies exactly what was verified: the copy reads its
// manifest from src, the source the verify steps opened, which keeps the
// very bytes the policy admitted, so a tag moved meanwhile cannot swap
// content; and it does not ping, authenticate and fetch the manifest a
// second time. Signatures a re-pull displaces are
// kept; a refused or failed copy removes what it wrote.
func (j *pullJob) copyPinned(src types.ImageSource, r *resolved) (*storage.Image, error) {
	s := j.s
	top, _, err := src.GetManifest(j.ctx, nil)
	if err != nil {
		return nil, j.fail("manifest", err)
	}
	if d := digest.FromBytes(top); d != r.topDigest {
		// A source that does not keep its manifest would let the tag move.
		return nil, j.bad(fmt.Errorf("registry source returned manifest %s after %s was verified", d, r.topDigest))
	}
	destRef, err := istorage.Transport.NewStoreReference(s.store, j.named, "")
	if err != nil {
		return nil, j.fail("", err)
	}
	// The caller holds the image's lock.
	configDigest := r.m.Config.Digest
	_, existErr := s.store.Image(configDigest.Encoded())
	existed := existErr == nil
	prevSigs := s.librarySignatureSets(configDigest.Encoded())
	layersBefore := s.layerIDs()
	j.w.startCopy(r.m)
	_, err = copy.Image(j.ctx, acceptVerified(), destRef, openedSource{src.Reference(), src}, &copy.Options{
		SourceCtx:          j.sys,
		DestinationCtx:     j.sys,
		ImageListSelection: copy.CopySystemImage,
		Progress:           j.w.progress,
		ProgressInterval:   progressInterval,
	})
	if err == nil && !existed {
		err = s.enforceStoredSize(j.ctx, configDigest)
	}
	if err != nil {
		s.removePulledLayers(layersBefore, r.m)
		return nil, j.fail("copy", err)
	}
	simg, err := s.storedImage(destRef, configDigest)
	if err != nil {
		return nil, j.fail("", err)
	}
	s.keepDisplacedSets(simg.ID, prevSigs)
	return simg, nil
}

// openedSource hands an open source to copy.Image, which takes a
// reference and opens its own.
type openedSource struct {
	types.ImageReference
	src types.ImageSource
}

func (o openedSource) NewImageSource(context.Context, *types.SystemContext) (types.ImageSource, error) {
	return o.src, nil
}

// enforceStoredSize: the limit may have been crossed by a blob the library
// had already read when the watch cancelled, and layers reused from the
// store were never inflated by the watch; the stored sizes are exact. A
// refused image is removed.
func (s *Service) enforceStoredSize(ctx context.Context, configDigest digest.Digest) error {
	var err error
	if cause := context.Cause(ctx); cause != nil {
		err = cause
	} else if s.cfg.MaxImageSize > 0 && s.imageUncompressedSize(configDigest.Encoded()) > s.cfg.MaxImageSize {
		err = tooLarge(s.cfg.MaxImageSize)
	}
	if err != nil {
		if _, derr := s.store.DeleteImage(configDigest.Encoded(), true); derr != nil && !errors.Is(derr, storage.ErrImageUnknown) {
			s.log.Warn("could not remove a refused image", "image", configDigest.String(), "error", derr)
		}
	}
	return err
}

// record adds this pull to the image's record (the caller holds the
// image's lock): the manifest verified, the
// reference the user wrote and what it resolved to, and the namespace's
// decision.
func (j *pullJob) record(simg *storage.Image, r *resolved) (*Image, error) {
	s := j.s
	rec, err := s.record(simg.ID)
	if err != nil {
		return nil, j.fail("", err)
	}
	now := time.Now().UTC()
	rec.ManifestDigest = r.m.Digest
	if r.indexDigest != "" {
		rec.IndexDigest = r.indexDigest
	}
	s.keepBundles(simg.ID, j.bundles.bundles)
	ref := Reference{User: j.req.Ref, Resolved: j.named.String(), Pulled: now, Manifest: r.m.Digest, Index: r.indexDigest}
	if set := s.librarySignatures(simg.ID, r.m.Digest); set != nil {
		ref.Signatures = set.Digest()
	}
	rec.AddReference(ref)
	rec.AddDecision(Decision{Namespace: j.req.Namespace, PolicyPath: j.pol.Path, PolicyDigest: j.pol.Digest, Reference: j.named.String(), Allowed: true, Warning: j.warned, Time: now, Signatures: ref.Signatures})
	if cfg, err := s.store.ImageBigData(simg.ID, r.m.Config.Digest.String()); err == nil {
		var c struct {
			Config struct{ User string } `json:"config"`
		}
		if json.Unmarshal(cfg, &c) == nil {
			rec.User = c.Config.User
		}
	}
	if err := s.saveRecord(simg.ID, rec); err != nil {
		return nil, j.fail("", err)
	}
	return s.view(simg, rec)
}
