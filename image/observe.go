package image

import (
	"errors"
	"fmt"
	"time"

	"github.com/crivet/crivet/policy"
)

// Stages of a signature decision.
const (
	StagePull        = "pull"
	StageCreate      = "create"       // the image a container runs
	StageImageVolume = "image-volume" // an image mounted as a volume (KEP-4639)
)

// Observer is told what the service did, for metrics. It is called on the
// paths of pulls and creates, so its methods must be cheap and safe for
// concurrent use.
type Observer interface {
	// Decision is one signature decision, as logged; reason is one of
	// policy.Reasons.
	Decision(stage, namespace, outcome, reason string, took time.Duration)
	// AdmissionCache is one look-up of the create-time admission cache.
	AdmissionCache(hit bool)
	// Pull is one pull of one candidate reference, ended: the bytes the
	// registry sent for its blobs, and how long it took.
	Pull(bytes uint64, took time.Duration, err error)
}

type nopObserver struct{}

func (nopObserver) Decision(string, string, string, string, time.Duration) {}
func (nopObserver) AdmissionCache(bool)                                    {}
func (nopObserver) Pull(uint64, time.Duration, error)                      {}

// Count is the number of stored images (a cheap List, for metrics).
func (s *Service) Count() (int, error) {
	imgs, err := s.store.Images()
	if err != nil {
		return 0, fmt.Errorf("count images: %w", err)
	}
	return len(imgs), nil
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
func (d decision) reason() string {
	if d.err == nil {
		return policy.ReasonNone
	}
	if errors.Is(d.err, ErrRegistryUnavailable) || unreachable(d.err) {
		return policy.ReasonRegistry
	}
	if r := policy.ReasonOf(d.err); r != policy.ReasonOther {
		return r
	}
	var c *classed
	if errors.As(d.err, &c) {
		return c.class
	}
	return policy.ReasonOther
}
