package image

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
)

// seen records what the service tells its observer.
type seen struct {
	mu           sync.Mutex
	decisions    []string // "stage namespace outcome reason"
	hits, misses int
	pulls        []string // "ok|error bytes>0"
}

func (s *seen) Decision(stage, ns, outcome, reason string, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if took <= 0 {
		reason += " (no duration)"
	}
	s.decisions = append(s.decisions, strings.Join([]string{stage, ns, outcome, reason}, " "))
}

func (s *seen) AdmissionCache(hit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hit {
		s.hits++
	} else {
		s.misses++
	}
}

func (s *seen) Pull(bytes uint64, took time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.pulls = append(s.pulls, fmt.Sprintf("%s bytes>0=%v took>0=%v", outcome, bytes > 0, took > 0))
}

func (s *seen) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.decisions) == 0 {
		return ""
	}
	return s.decisions[len(s.decisions)-1]
}

// Each real rejection the library produces is classed in the fixed set
// metrics label decisions with; the stage and outcome are the logged ones.
func TestDecisionsAreObservedWithAReasonClass(t *testing.T) {
	e := newEnv(t)
	obs := &seen{}
	e.svc.obs = obs
	e.svc.trust = newVerifier(e.svc) // the decisions report to obs too
	key, other := fixtures.NewSigstoreKey(t), fixtures.NewSigstoreKey(t)
	kl := fixtures.NewKeyless(t, "https://issuer.crivet.test", "dev@crivet.test")
	foreign := fixtures.NewKeyless(t, "https://issuer.crivet.test", "dev@crivet.test")

	unsigned := fixtures.PushImage(t, e.ref("app/unsigned:1"), 1024)
	signed := fixtures.PushImage(t, e.ref("app/signed:1"), 1024)
	key.Sign(t, signed.Ref)
	claims := fixtures.PushImage(t, e.ref("app/claims:1"), 1024)
	key.Sign(t, claims.Ref, fixtures.WithIdentity(e.ref("elsewhere/app:1")))
	victim := fixtures.PushImage(t, e.ref("app/signed:victim"), 1024)
	fixtures.CopySigstoreAttachment(t, e.reg, "app/signed", signed.ManifestDigest, victim.ManifestDigest)
	keyless := fixtures.PushImage(t, e.ref("app/keyless:1"), 1024)
	kl.Sign(t, keyless.Ref)
	malformed := fixtures.PushImage(t, e.ref("app/malformed:1"), 1024)
	fixtures.PushMalformedSigstoreAttachment(t, malformed.DigestRef(), kl, "dev.sigstore.cosign/bundle")
	klReq := func(ca, email string) string {
		return anyDocker(keylessReq(ca, kl.Issuer, email, kl.RekorPublicKeyPath, matchRepo))
	}

	for _, tc := range []struct {
		ns, policy, ref, want string
	}{
		{"loose", acceptAll, unsigned.Ref, "allowed none"},
		{"key", anyDocker(keyReq(key.PublicKeyPath, matchRepo)), unsigned.Ref, "rejected no_signature"},
		{"other-key", anyDocker(keyReq(other.PublicKeyPath, matchRepo)), signed.Ref, "rejected untrusted_key"},
		{"identity", anyDocker(keyReq(key.PublicKeyPath, matchRepo)), claims.Ref, "rejected identity_mismatch"},
		{"digest", anyDocker(keyReq(key.PublicKeyPath, matchRepo)), victim.Ref, "rejected digest_mismatch"},
		{"keyless-email", klReq(kl.CAPath, "mallory@crivet.test"), keyless.Ref, "rejected keyless_claims"},
		{"keyless-ca", klReq(foreign.CAPath, kl.Email), keyless.Ref, "rejected untrusted_key"},
		{"keyless-malformed", klReq(kl.CAPath, kl.Email), malformed.Ref, "rejected invalid_signature"},
		{"reject", rejectAll, unsigned.Ref, "rejected policy_reject"},
		{"no-key-file", anyDocker(keyReq(filepath.Join(e.dir, "absent.pub"), matchRepo)), signed.Ref, "rejected key_unreadable"},
		{"broken", `{"default":[`, unsigned.Ref, "error policy_unreadable"},
	} {
		e.setNamespace(tc.ns, tc.policy)
		_, _ = e.pull(tc.ref, tc.ns)
		if got, want := obs.last(), "pull "+tc.ns+" "+tc.want; got != want {
			t.Errorf("namespace %s: observed %q, want %q", tc.ns, got, want)
		}
	}

	// At create: the image and its image volumes, by their own stages.
	img := e.mustPull(unsigned.Ref, "loose")
	admit := func(req AdmitRequest, want string) {
		t.Helper()
		_, _ = e.svc.AdmitFor(context.Background(), req)
		if got := obs.last(); got != want {
			t.Errorf("admit %+v: observed %q, want %q", req, got, want)
		}
	}
	admit(AdmitRequest{Image: img, UserRef: unsigned.Ref, Namespace: "key"}, "create key rejected no_signature")
	admit(AdmitRequest{Image: img, UserRef: unsigned.Ref, Namespace: "key", Volume: true}, "image-volume key rejected no_signature")
	admit(AdmitRequest{Image: img, UserRef: signed.Ref, Namespace: "loose"}, "create loose rejected reference_mismatch")

	// The admission cache: a miss, then a hit for the same decision.
	obs.hits, obs.misses = 0, 0
	admit(AdmitRequest{Image: img, UserRef: unsigned.Ref, Namespace: "loose"}, "create loose allowed none")
	admit(AdmitRequest{Image: img, UserRef: unsigned.Ref, Namespace: "loose", Volume: true}, "image-volume loose allowed none")
	if obs.misses != 1 || obs.hits != 1 {
		t.Errorf("admission cache: %d misses, %d hits; want 1, 1", obs.misses, obs.hits)
	}
}

// A pull that stored an image reports the registry's bytes; a rejected
// one reports an error.
func TestPullsAreObservedWithBytesAndDuration(t *testing.T) {
	e := newEnv(t)
	obs := &seen{}
	e.svc.obs = obs
	e.svc.trust = newVerifier(e.svc) // the decisions report to obs too
	img := fixtures.PushImage(t, e.ref("app/bytes:1"), 64<<10)
	e.mustPull(img.Ref, "")
	e.setNamespace("strict", rejectAll)
	other := fixtures.PushImage(t, e.ref("app/bytes:2"), 1024)
	_, _ = e.pull(other.Ref, "strict")
	want := []string{"ok bytes>0=true took>0=true", "error bytes>0=false took>0=true"}
	if strings.Join(obs.pulls, ", ") != strings.Join(want, ", ") {
		t.Fatalf("pulls observed %q, want %q", obs.pulls, want)
	}
}
