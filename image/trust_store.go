package image

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/crivet/crivet/image/record"
	"github.com/crivet/crivet/image/trust"
	"github.com/crivet/crivet/policy"
	"go.podman.io/image/v5/docker/reference"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
)

// The signature decisions live in image/trust; these names keep the
// package's API, and the methods below forward to it.
type (
	Admission      = trust.Admission
	AdmitRequest   = trust.AdmitRequest
	BundleCheck    = trust.BundleCheck
	BundleSigner   = trust.BundleSigner
	BundleLogEntry = trust.BundleLogEntry
)

// newVerifier makes the decisions of s, reading its store through
// trustStore.
func newVerifier(s *Service) *trust.Verifier {
	return trust.New(trust.Config{
		Store:    trustStore{s},
		Policies: s.cfg.Policies,
		Audit:    s.cfg.Audit,
		Logger:   s.log,
		Observer: s.obs,
		TempDir:  filepath.Join(s.cfg.Root, "tmp"),
		RegistryError: func(err error) bool {
			return errors.Is(err, ErrRegistryUnavailable) || unreachable(err)
		},
	})
}

// AdmitFor applies the namespace's effective policy to a stored image,
// offline, and logs the decision (trust.Verifier.AdmitFor). This is the
// only create-time entry to the policy.
func (s *Service) AdmitFor(ctx context.Context, req AdmitRequest) (Admission, error) {
	return s.trust.AdmitFor(ctx, req)
}

// Admit decides, offline, whether a stored image may run under pol when
// the client calls it userRef (trust.Verifier.Admit).
func (s *Service) Admit(ctx context.Context, img *Image, userRef string, pol *policy.Policy) (Admission, error) {
	return s.trust.Admit(ctx, img, userRef, pol)
}

// VerifyStored evaluates pol for a stored image as if it were the image
// named identity in its registry, offline (trust.Verifier.VerifyStored).
func (s *Service) VerifyStored(ctx context.Context, img *Image, identity reference.Named, pol *policy.Policy) error {
	return s.trust.VerifyStored(ctx, img, identity, pol)
}

// trustStore is what image/trust reads of the store.
type trustStore struct{ s *Service }

func (t trustStore) Resolve(ref string) (*trust.Found, error) { return t.s.resolve(ref) }

func (t trustStore) ImageSource(ctx context.Context, id string) (types.ImageSource, error) {
	sref, err := istorage.Transport.NewStoreReference(t.s.store, nil, id)
	if err != nil {
		return nil, err
	}
	return sref.NewImageSource(ctx, t.s.systemContext())
}

func (t trustStore) KeptSignatures(id string) []*record.SignatureSet { return t.s.keptSignatures(id) }
func (t trustStore) KeptBundles(id string) []record.KeptBundle       { return t.s.keptBundles(id) }
