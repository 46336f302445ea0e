package image

import (
	"fmt"
	"time"

	"github.com/crivet/crivet/image/trust"
)

// Stages of a signature decision.
const (
	StagePull        = trust.StagePull
	StageCreate      = trust.StageCreate      // the image a container runs
	StageImageVolume = trust.StageImageVolume // an image mounted as a volume (KEP-4639)
)

// Observer is told what the service did, for metrics. It is called on the
// paths of pulls and creates, so its methods must be cheap and safe for
// concurrent use.
type Observer interface {
	// Decision and AdmissionCache: the signature decisions (image/trust).
	trust.Observer
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
