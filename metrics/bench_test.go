package metrics

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// What metrics add to one create: the CRI request, one admission-cache
// look-up and one decision observed. Compare with
// image.BenchmarkAdmitForKeylessCached (tens of µs) for the share.
func BenchmarkObserveCreate(b *testing.B) {
	m := New()
	for b.Loop() {
		m.AdmissionCache(true)
		m.Decision("create", "team-a", "allowed", "none", 30*time.Microsecond)
		m.CRIRequest("CreateContainer", codes.OK, 50*time.Millisecond)
	}
}

// What metrics add to one pull: the CRI request, the decision and the pull.
func BenchmarkObservePull(b *testing.B) {
	m := New()
	for b.Loop() {
		m.Decision("pull", "team-a", "allowed", "none", 2*time.Millisecond)
		m.Pull(1<<20, 200*time.Millisecond, nil)
		m.CRIRequest("PullImage", codes.OK, 200*time.Millisecond)
	}
}
