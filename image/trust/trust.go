// Package trust holds crivet's signature decisions: what a stored image
// is verified as (the identity rule), its admission at create time with
// the admission cache, the offline verification of the signatures and
// Sigstore bundles kept with it, the one shape every decision is logged
// and audited in, and the bundle report of `crivet policy check`.
//
// It reads the image store through Store and never writes it; package
// image owns the store, pulls and imports, and calls this package for
// every decision.
package trust

import (
	"context"
	"log/slog"
	"time"

	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/image/record"
	"github.com/crivet/crivet/policy"
	"go.podman.io/image/v5/types"
)

// Stages of a signature decision.
const (
	StagePull        = "pull"
	StageCreate      = "create"       // the image a container runs
	StageImageVolume = "image-volume" // an image mounted as a volume (KEP-4639)
)

// Store is what the decisions read from the image store.
type Store interface {
	// Resolve is the one lookup (the identity rule, identity.go): the
	// image a client's reference names, and how it was found.
	Resolve(ref string) (*Found, error)
	// ImageSource reads the stored image id (its manifests and the
	// signatures the library stored with them).
	ImageSource(ctx context.Context, id string) (types.ImageSource, error)
	// KeptSignatures are the signature sets later pulls displaced, and
	// KeptBundles the Sigstore bundles kept with image id.
	KeptSignatures(id string) []*record.SignatureSet
	KeptBundles(id string) []record.KeptBundle
}

// Observer is told of decisions and admission-cache look-ups, for
// metrics. Its methods must be cheap and safe for concurrent use.
type Observer interface {
	// Decision is one signature decision, as logged; reason is one of
	// policy.Reasons.
	Decision(stage, namespace, outcome, reason string, took time.Duration)
	// AdmissionCache is one look-up of the create-time admission cache.
	AdmissionCache(hit bool)
}

// Config is what a Verifier decides with.
type Config struct {
	Store Store
	// Policies are the node's signature policies (and each namespace's mode).
	Policies *policy.Store
	// Audit receives one record per decision; nil discards.
	Audit  *audit.Log
	Logger *slog.Logger
	// Observer may be nil.
	Observer Observer
	// TempDir holds the short-lived dir: images that kept signatures are
	// verified from.
	TempDir string
	// RegistryError says whether err means a registry could not be
	// reached (the decision's metrics class); nil: never.
	RegistryError func(error) bool
}

// Verifier makes the signature decisions of one image store.
type Verifier struct {
	cfg      Config
	store    Store
	log      *slog.Logger
	obs      Observer
	admitted admitCache
}

// New returns a Verifier for cfg.
func New(cfg Config) *Verifier {
	v := &Verifier{cfg: cfg, store: cfg.Store, log: cfg.Logger, obs: cfg.Observer}
	if v.log == nil {
		v.log = slog.Default()
	}
	if v.obs == nil {
		v.obs = nopObserver{}
	}
	if v.cfg.RegistryError == nil {
		v.cfg.RegistryError = func(error) bool { return false }
	}
	return v
}

type nopObserver struct{}

func (nopObserver) Decision(string, string, string, string, time.Duration) {}
func (nopObserver) AdmissionCache(bool)                                    {}

// ForgetAdmissions empties the admission cache: the next create-time
// check of every image verifies afresh.
func (v *Verifier) ForgetAdmissions() {
	v.admitted.mu.Lock()
	v.admitted.m = nil
	v.admitted.mu.Unlock()
}
