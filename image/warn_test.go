package image

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
)

// Warn mode admits what the namespace's policy refuses, at pull and at
// create, and marks every such decision warned; namespaces without a warn
// entry stay enforced, and a policy that cannot be evaluated is never
// admitted, warn or not.
func TestWarnModeAdmitsRefusalsOnlyWhereConfigured(t *testing.T) {
	e := newEnv(t)
	unsigned := fixtures.PushImage(t, e.ref("app/unsigned:1"), 1024)
	e.setNamespace("staging", rejectAll)
	e.setNamespace("prod", rejectAll)
	e.svc.cfg.Policies.SetModes(map[string]policy.Mode{"staging": policy.Warn})

	e.mustReject(unsigned.Ref, "prod", "Running image")
	img := e.mustPull(unsigned.Ref, "staging")
	if d := img.Record.Decisions; len(d) != 1 || !d[0].Allowed || !strings.Contains(d[0].Warning, "Running image") {
		t.Fatalf("warned pull record: %+v", d)
	}

	admitFor := func(ns string) (Admission, error) {
		return e.svc.AdmitFor(context.Background(), AdmitRequest{Image: img, UserRef: unsigned.Ref, Namespace: ns, Pod: "p", Container: "c"})
	}
	adm, err := admitFor("staging")
	if err != nil || !strings.Contains(adm.Warning, "Running image") || adm.Identity == "" {
		t.Fatalf("staging create: %+v, %v", adm, err)
	}
	var rej *policy.Rejection
	if _, err := admitFor("prod"); !errors.As(err, &rej) {
		t.Fatalf("prod create admitted: %v", err)
	}
	// "other" falls back to the global policy, enforced unless "*" says warn.
	e.setGlobal(rejectAll)
	if _, err := admitFor("other"); !errors.As(err, &rej) {
		t.Fatalf("global policy in enforce mode admitted: %v", err)
	}
	e.svc.cfg.Policies.SetModes(map[string]policy.Mode{"staging": policy.Warn, policy.AnyNamespace: policy.Warn, "prod": policy.Enforce})
	if adm, err := admitFor("other"); err != nil || adm.Warning == "" {
		t.Fatalf("global policy with \"*\" = warn: %+v, %v", adm, err)
	}
	if _, err := admitFor("prod"); !errors.As(err, &rej) {
		t.Fatalf("prod's own enforce entry lost to \"*\": %v", err)
	}

	// A broken policy file is an error, not a refusal: never admitted.
	e.setNamespace("staging", `{"default": [`)
	var fe *policy.FileError
	if _, err := admitFor("staging"); !errors.As(err, &fe) {
		t.Fatalf("malformed staging policy in warn mode: %v", err)
	}

	var outcomes []string
	for _, d := range e.decisions.all() {
		outcomes = append(outcomes, d["stage"]+"/"+d["namespace"]+"/"+d["outcome"])
	}
	want := "pull/prod/rejected pull/staging/warned create/staging/warned create/prod/rejected create/other/rejected create/other/warned create/prod/rejected create/staging/error"
	if got := strings.Join(outcomes, " "); got != want {
		t.Fatalf("decisions:\n got %s\nwant %s", got, want)
	}
}
