package image

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crivet/crivet/image/trust"
	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/shortnames"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// PullRequest is one CRI PullImage.
type PullRequest struct {
	// Ref is the image as the client wrote it.
	Ref string
	// Namespace is the pod's namespace, "" when the pull has no pod.
	Namespace string
	Auth      *Auth
}

// Auth carries CRI AuthConfig credentials.
type Auth struct {
	Username, Password string
	// Auth is base64("user:password"), used when Username is empty.
	Auth          string
	IdentityToken string
	RegistryToken string
}

func (a *Auth) key() string {
	if a == nil {
		return ""
	}
	h := sha256.Sum256([]byte(strings.Join([]string{a.Username, a.Password, a.Auth, a.IdentityToken, a.RegistryToken}, "\x00")))
	return hex.EncodeToString(h[:])
}

func (a *Auth) apply(sys *types.SystemContext) error {
	if a == nil {
		return nil
	}
	user, pass := a.Username, a.Password
	if user == "" && a.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return fmt.Errorf("auth: decode: %w", err)
		}
		var ok bool
		if user, pass, ok = strings.Cut(string(raw), ":"); !ok {
			return errors.New("auth: not user:password")
		}
	}
	if user != "" || a.IdentityToken != "" {
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: pass, IdentityToken: a.IdentityToken}
	}
	if a.RegistryToken != "" {
		sys.DockerBearerRegistryToken = a.RegistryToken
	}
	return nil
}

// Pull verifies the image against the effective policy of the request's
// namespace and stores it. Identical concurrent pulls (same reference,
// namespace and credentials) are done once.
func (s *Service) Pull(ctx context.Context, req PullRequest) (*Image, error) {
	pol, err := s.policyFor(req, false)
	if err != nil {
		return nil, err
	}
	key := strings.Join([]string{req.Ref, req.Namespace, req.Auth.key(), string(pol.Fingerprint())}, "\x00")
	v, err, callerGone := s.shared(ctx, key, func(ctx context.Context) (any, error) { return s.pull(ctx, req, pol) })
	if err != nil {
		if callerGone {
			return nil, fmt.Errorf("pull %s: %w", req.Ref, err)
		}
		return nil, err
	}
	return v.(*Image), nil
}

// policyFor is the first step of a pull and of a check: the namespace's
// effective policy. A policy that cannot be read decides too: nothing is
// pulled.
func (s *Service) policyFor(req PullRequest, dryRun bool) (*policy.Policy, error) {
	start := time.Now()
	pol, err := s.cfg.Policies.ForNamespace(req.Namespace)
	if err != nil {
		// A policy that cannot be read decides too: nothing is pulled.
		s.trust.Log(trust.Decision{Stage: StagePull, Namespace: req.Namespace, Reference: req.Ref, Err: err, Duration: time.Since(start), DryRun: dryRun})
		return nil, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	return pol, nil
}

func (s *Service) pull(ctx context.Context, req PullRequest, pol *policy.Policy) (*Image, error) {
	var img *Image
	err := s.eachCandidate(req, func(sys *types.SystemContext, named reference.Named) (err error) {
		img, err = s.pullCandidate(ctx, sys, req, pol, named)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.storeChanged()
	return img, nil
}

// eachCandidate tries the request's reference as each fully qualified
// candidate in turn, with the request's credentials, until try succeeds.
func (s *Service) eachCandidate(req PullRequest, try func(*types.SystemContext, reference.Named) error) error {
	sys := s.systemContext()
	if err := req.Auth.apply(sys); err != nil {
		return fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	candidates, err := s.candidates(sys, req.Ref)
	if err != nil {
		return fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	var errs []error
	for _, named := range candidates {
		err := try(sys, named)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		// A registry that has the image decides: a rejection ends the
		// search rather than trying the same name elsewhere. So does an
		// unreachable registry: an internal registry that is down must
		// not turn short names into pulls from the next one (Docker Hub).
		var rej *policy.Rejection
		if errors.As(err, &rej) || errors.Is(err, ErrRegistryUnavailable) || unreachable(err) || len(candidates) == 1 {
			return err
		}
	}
	return fmt.Errorf("pull %s: no candidate succeeded: %w", req.Ref, errors.Join(errs...))
}

// candidates turns the user's reference into fully qualified ones:
// registries.conf aliases and unqualified-search registries for short
// names, docker.io (as kubelet and containerd assume) when none is set.
func (s *Service) candidates(sys *types.SystemContext, ref string) ([]reference.Named, error) {
	if !shortnames.IsShortName(ref) {
		named, err := reference.ParseNormalizedNamed(ref)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidReference, err)
		}
		return []reference.Named{reference.TagNameOnly(named)}, nil
	}
	resolved, err := shortnames.Resolve(sys, ref)
	if err == nil {
		var out []reference.Named
		for _, c := range resolved.PullCandidates {
			out = append(out, c.Value)
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	named, perr := reference.ParseNormalizedNamed(ref)
	if perr != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidReference, perr)
	}
	return []reference.Named{reference.TagNameOnly(named)}, nil
}

// badManifest marks a manifest the registry served that crivet cannot use.
type badManifest struct{ err error }

func (e *badManifest) Error() string        { return e.err.Error() }
func (e *badManifest) Unwrap() error        { return e.err }
func (e *badManifest) Is(target error) bool { return target == ErrBadManifest }

// pullCandidate pulls one fully qualified reference: the steps a check
// runs too (verify: resolve the manifest the node will run, refuse what
// exceeds the limits, check the signature policy), then copy exactly what
// was checked, and record who pulled it under which policy.
func (s *Service) pullCandidate(ctx context.Context, sys *types.SystemContext, req PullRequest, pol *policy.Policy, named reference.Named) (_ *Image, retErr error) {
	j, done, err := s.newJob(ctx, sys, req, pol, named, true)
	if err != nil {
		return nil, err
	}
	defer func() {
		done()
		j.w.summary(retErr)
	}()
	src, err := j.openSource()
	if err != nil {
		return nil, err
	}
	// copy.Image closes src too; a docker source's Close can be repeated.
	defer src.Close()
	r, err := j.verify(src)
	if err != nil {
		return nil, err
	}
	// Bundles are kept with the image whatever this namespace's policy
	// asked, so that another namespace's create-time check can verify
	// them offline; a registry that fails here only loses that.
	if _, err := j.findBundles(j.ctx, r); err != nil {
		s.log.Warn("could not look for sigstore bundles", "reference", j.named.String(), "error", err)
	}
	// The copy and the record are one step for other users of the image:
	// a removal, another pull or an import (another process) between them
	// would fail this pull or lose what one of them recorded.
	id := r.m.Config.Digest.Encoded()
	unlock, err := s.lockImage(id)
	if err != nil {
		return nil, j.fail("", err)
	}
	img, err := j.copyAndRecord(src, r)
	unlock()
	if err != nil {
		return nil, err
	}
	// The tag now names this image: where it named another, it stays
	// that image's provenance (verification by ID) but finds it no more.
	s.markMovedElsewhere(j.named, id)
	return img, nil
}

func (j *pullJob) copyAndRecord(src types.ImageSource, r *resolved) (*Image, error) {
	simg, err := j.copyPinned(src, r)
	if err != nil {
		return nil, err
	}
	return j.record(simg, r)
}

// checkCandidate runs a pull's verify steps for one candidate and stops
// before the copy: nothing is written, the decision is a dry run.
func (s *Service) checkCandidate(ctx context.Context, sys *types.SystemContext, req PullRequest, pol *policy.Policy, named reference.Named) (*pullJob, *resolved, error) {
	j, done, err := s.newJob(ctx, sys, req, pol, named, false)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	src, err := j.openSource()
	if err != nil {
		return j, nil, err
	}
	defer src.Close()
	r, err := j.verify(src)
	return j, r, err
}

// newJob starts one candidate's job under its own watch; done ends both.
// Only a job that copies writes: its blobs go to its own temporary
// directory, which the watch follows and which done removes, so a failed
// pull leaves nothing behind.
func (s *Service) newJob(ctx context.Context, sys *types.SystemContext, req PullRequest, pol *policy.Policy, named reference.Named, copies bool) (*pullJob, func(), error) {
	ctx, cancel := context.WithCancelCause(ctx)
	w, err := s.newPullWatch(named.String(), cancel, copies)
	if err != nil {
		cancel(nil)
		return nil, nil, fmt.Errorf("pull %s: %w", named, err)
	}
	j := &pullJob{s: s, ctx: ctx, sys: sys, req: req, pol: pol, named: named, w: w, dryRun: !copies}
	if copies {
		sysCopy := *sys
		sysCopy.BigFilesTemporaryDir = w.tmpDir
		j.sys = &sysCopy
	}
	return j, func() { w.stop(); cancel(nil) }, nil
}

// acceptVerified is the policy of the copy step: the manifest it copies is
// pinned to the digest the namespace policy has just admitted.
func acceptVerified() *signature.PolicyContext {
	pc, _ := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	return pc
}

func (s *Service) storedImage(ref types.ImageReference, configDigest digest.Digest) (*storage.Image, error) {
	if img, err := s.store.Image(configDigest.Encoded()); err == nil {
		return img, nil
	}
	return istorage.Transport.GetStoreImage(s.store, ref)
}

// markMovedElsewhere marks named, a tag now naming image keep, as formerly
// the provenance of every other image recorded under it. A digest never
// moves.
func (s *Service) markMovedElsewhere(named reference.Named, keep string) {
	if _, digested := named.(reference.Digested); digested {
		return
	}
	name := named.String()
	imgs, err := s.store.Images()
	if err != nil {
		return
	}
	for i := range imgs {
		id := imgs[i].ID
		if id == keep {
			continue
		}
		rec, err := s.recordOf(&imgs[i])
		if err != nil || !rec.Clone().MarkFormerly(name) {
			continue
		}
		unlock, err := s.lockImage(id)
		if err != nil {
			s.log.Warn("could not update an image record", "image", id, "error", err)
			continue
		}
		if rec, err = s.record(id); err == nil && rec.MarkFormerly(name) {
			if err := s.saveRecord(id, rec); err != nil {
				s.log.Warn("could not update an image record", "image", id, "error", err)
			}
		}
		unlock()
	}
}

func (s *Service) layerIDs() map[string]bool {
	layers, err := s.store.Layers()
	if err != nil {
		return nil
	}
	ids := make(map[string]bool, len(layers))
	for _, l := range layers {
		ids[l.ID] = true
	}
	return ids
}

// imageUncompressedSize is the unpacked size of an image's layer chain.
func (s *Service) imageUncompressedSize(id string) int64 {
	img, err := s.store.Image(id)
	if err != nil {
		return 0
	}
	var total int64
	for lid := img.TopLayer; lid != ""; {
		l, err := s.store.Layer(lid)
		if err != nil {
			break
		}
		if l.UncompressedSize > 0 {
			total += l.UncompressedSize
		}
		lid = l.Parent
	}
	return total
}

// removePulledLayers deletes what a failed copy committed: layers that are
// new since before the copy, used by no image or container, and made from
// one of m's blobs (so a concurrent pull of another image keeps its own).
// The start-up sweep would find them too, but only at the next start.
func (s *Service) removePulledLayers(before map[string]bool, m *remoteManifest) {
	if before == nil {
		return
	}
	blobs := map[digest.Digest]bool{}
	for _, l := range m.Layers {
		blobs[l.Digest] = true
	}
	layers, err := s.store.Layers()
	if err != nil {
		return
	}
	used := map[string]bool{}
	if images, err := s.store.Images(); err == nil {
		for _, img := range images {
			used[img.TopLayer] = true
			for _, t := range img.MappedTopLayers {
				used[t] = true
			}
		}
	}
	if ctrs, err := s.store.Containers(); err == nil {
		for _, c := range ctrs {
			used[c.LayerID] = true
		}
	}
	parents := map[string]int{}
	for _, l := range layers {
		if l.Parent != "" {
			parents[l.Parent]++
		}
	}
	ours := map[string]storage.Layer{}
	for _, l := range layers {
		if !before[l.ID] && !used[l.ID] && blobs[l.CompressedDigest] {
			ours[l.ID] = l
		}
	}
	// Children before parents: the layers of one image form a chain.
	for len(ours) > 0 {
		removed := 0
		for id, l := range ours {
			if parents[id] > 0 {
				continue
			}
			if err := s.store.DeleteLayer(id); err != nil {
				s.log.Warn("could not remove a layer of a failed pull", "layer", id, "error", err)
			} else {
				removed++
			}
			delete(ours, id)
			if l.Parent != "" {
				parents[l.Parent]--
			}
		}
		if removed == 0 {
			return
		}
	}
}
