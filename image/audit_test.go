package image

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/test/fixtures"
)

// Every signature decision, at pull and at create, allowed, rejected or
// failed on a broken policy file, is one audit line agreeing with the
// decision, written before the call returns.
func TestEveryDecisionIsAnAuditLineBeforeTheCallReturns(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, "audit.log")
	al, err := audit.Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	reopen(e, func(c *Config) { c.Audit = al }, nil)
	key := fixtures.NewSigstoreKey(t)
	signed := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	key.Sign(t, signed.Ref)
	unsigned := fixtures.PushImage(t, e.ref("team/app:unsigned"), 1024)
	e.setNamespace("strict", anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	e.setNamespace("broken", `{"default":[{"type":"nonsense"}]}`)

	lines := func() []audit.Record {
		out, err := audit.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	last := func(want int) audit.Record {
		t.Helper()
		got := lines()
		if len(got) != want {
			t.Fatalf("%d audit lines, want %d: %+v", len(got), want, got)
		}
		return got[want-1]
	}

	img := e.mustPull(signed.Ref, "strict")
	r := last(1)
	if r.Stage != "pull" || r.Outcome != "allowed" || r.Namespace != "strict" || r.Reference != signed.Ref || r.Resolved != signed.Ref ||
		r.Digest != signed.ManifestDigest || r.Policy != filepath.Join(e.nsDir, "strict.json") || !strings.HasPrefix(r.PolicyDigest, "sha256:") ||
		!slices.Equal(r.Requirements, []string{"sigstoreSigned"}) || r.DurationMS <= 0 {
		t.Errorf("allowed pull: %+v", r)
	}
	e.mustReject(unsigned.Ref, "strict", noSignature)
	if r := last(2); r.Outcome != "rejected" || !strings.Contains(r.Reason, noSignature) || r.Reference != unsigned.Ref {
		t.Errorf("rejected pull: %+v", r)
	}
	if _, err := e.pull(signed.Ref, "broken"); err == nil {
		t.Fatal("pull under a broken policy file succeeded")
	}
	if r := last(3); r.Outcome != "error" || !strings.Contains(r.Reason, filepath.Join(e.nsDir, "broken.json")) || r.Namespace != "broken" {
		t.Errorf("broken policy at pull: %+v", r)
	}
	e.setNamespace("stricter", rejectAll)
	if _, err := e.svc.AdmitFor(context.Background(), AdmitRequest{Image: img, UserRef: signed.Ref, Namespace: "stricter", Pod: "pod-1", Container: "c-1"}); err == nil {
		t.Fatal("admitted under reject-all")
	}
	if r := last(4); r.Stage != "create" || r.Outcome != "rejected" || r.Pod != "pod-1" || r.Container != "c-1" || r.Image != img.ID ||
		r.Policy != filepath.Join(e.nsDir, "stricter.json") {
		t.Errorf("rejected create: %+v", r)
	}
	if _, err := e.svc.AdmitFor(context.Background(), AdmitRequest{Image: img, UserRef: signed.Ref, Namespace: "strict", Pod: "pod-2", Container: "c-2"}); err != nil {
		t.Fatal(err)
	}
	if r := last(5); r.Stage != "create" || r.Outcome != "allowed" || r.Resolved != signed.Ref || !slices.Equal(r.Requirements, []string{"sigstoreSigned"}) {
		t.Errorf("allowed create: %+v", r)
	}
}
