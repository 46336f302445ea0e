package image

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
)

// checker is what `crivet policy check` builds from the daemon's
// configuration: a Checker over the env's files and root.
func (e *env) checker(tune func(*Config)) *Checker {
	e.t.Helper()
	cfg := Config{
		Root: e.root, RunRoot: filepath.Join(e.dir, "run"),
		RegistriesConf: e.regConf, RegistriesD: e.regD, AuthFile: e.authFile,
		Policies: policy.NewStore(e.global, e.nsDir),
		Logger:   slog.New(e.decisions),
	}
	if tune != nil {
		tune(&cfg)
	}
	c, err := NewChecker(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func TestCheckStoresNothingAndAuditsNothing(t *testing.T) {
	e := newEnv(t)
	auditPath := filepath.Join(e.dir, "audit.log")
	al, err := audit.Open(auditPath, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	reopen(e, func(c *Config) { c.Audit = al }, nil)
	key := fixtures.NewSigstoreKey(t)
	signed := fixtures.PushImage(t, e.ref("team/app:1"), 1<<20)
	key.Sign(t, signed.Ref)
	unsigned := fixtures.PushImage(t, e.ref("team/app:unsigned"), 1<<20)
	e.mustPull(fixtures.PushImage(t, e.ref("other/app:1"), 1024).Ref, "") // the store is not empty
	e.setGlobal(anyDocker(keyReq(key.PublicKeyPath, matchRepo)))

	files, state := e.storeFiles(), storeState(t, e)
	auditLines := func() int {
		recs, err := audit.ReadFile(auditPath)
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	audited, decisions := auditLines(), len(e.decisions.all())
	for _, tc := range []struct{ ref, outcome string }{{signed.Ref, "allowed"}, {unsigned.Ref, "rejected"}} {
		res, err := e.svc.Check(context.Background(), PullRequest{Ref: tc.ref})
		if res.Outcome != tc.outcome || (err == nil) != (tc.outcome == "allowed") {
			t.Fatalf("check %s: %+v, %v; want %s", tc.ref, res, err, tc.outcome)
		}
	}
	if got := e.storeFiles(); !slices.Equal(got, files) {
		t.Errorf("a check changed the store's files:\nbefore %v\nafter  %v", files, got)
	}
	if got := storeState(t, e); got != state {
		t.Errorf("a check changed the store:\nbefore %s\nafter  %s", state, got)
	}
	if got := auditLines(); got != audited {
		t.Errorf("checks wrote %d audit lines", got-audited)
	}
	if got := len(e.decisions.all()); got != decisions {
		t.Errorf("checks were logged as %d policy decisions: %s", got-decisions, e.decisions)
	}
	if got := len(e.decisions.find("signature policy check (dry run)")); got != 2 {
		t.Errorf("%d dry-run records, want 2", got)
	}

	// The CLI's Checker opens no store: a root that does not exist stays so.
	c := e.checker(func(c *Config) {
		c.Root, c.RunRoot = filepath.Join(e.dir, "no-root"), filepath.Join(e.dir, "no-run")
	})
	if res, err := c.Check(context.Background(), PullRequest{Ref: signed.Ref}); err != nil || res.Outcome != "allowed" {
		t.Fatalf("checker: %+v %v", res, err)
	}
	for _, d := range []string{"no-root", "no-run"} {
		if _, err := os.Stat(filepath.Join(e.dir, d)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a check created %s: %v", d, err)
		}
	}
}

// A check answers exactly what a pull then does, case by case, with the
// same error text.
func TestCheckAgreesWithPull(t *testing.T) {
	e := newEnv(t)
	key, otherKey := fixtures.NewSigstoreKey(t), fixtures.NewSigstoreKey(t)
	kl := fixtures.NewKeyless(t, "https://issuer.crivet.test", "dev@crivet.test")
	g, otherG := fixtures.NewGPGKey(t), fixtures.NewGPGKey(t)

	keyed := fixtures.PushImage(t, e.ref("team/keyed:1"), 1024)
	key.Sign(t, keyed.Ref)
	keyless := fixtures.PushImage(t, e.ref("team/keyless:1"), 1024)
	kl.Sign(t, keyless.Ref)
	gpg := fixtures.PushImage(t, e.ref("team/gpg:1"), 1024)
	g.Sign(t, gpg.Ref, e.lookaside)
	unsigned := fixtures.PushImage(t, e.ref("team/unsigned:1"), 1024)
	misnamed := fixtures.PushImage(t, e.ref("team/misnamed:1"), 1024)
	key.Sign(t, misnamed.Ref, fixtures.WithIdentity(e.ref("elsewhere/app:1")))
	outside := fixtures.PushImage(t, e.ref("outside/app:1"), 1024)

	e.setGlobal(scoped(e.reg.Addr+"/team", keyReq(key.PublicKeyPath, matchRepo)))
	e.setNamespace("key", anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	e.setNamespace("wrong-key", anyDocker(keyReq(otherKey.PublicKeyPath, matchRepo)))
	e.setNamespace("keyless", anyDocker(keylessReq(kl.CAPath, kl.Issuer, kl.Email, kl.RekorPublicKeyPath, matchRepo)))
	e.setNamespace("keyless-email", anyDocker(keylessReq(kl.CAPath, kl.Issuer, "x@y.z", kl.RekorPublicKeyPath, matchRepo)))
	e.setNamespace("gpg", anyDocker(gpgReq(g.PublicKeyPath)))
	e.setNamespace("gpg-other", anyDocker(gpgReq(otherG.PublicKeyPath)))
	e.setNamespace("reject", rejectAll)
	e.setNamespace("relaxed", acceptAll)
	e.setNamespace("broken", `{"default":[`)

	c := e.checker(nil)
	for _, tc := range []struct {
		name, ref, ns, outcome, reason string
	}{
		{"sigstore key", keyed.Ref, "key", "allowed", ""},
		{"sigstore unsigned", unsigned.Ref, "key", "rejected", noSignature},
		{"sigstore wrong key", keyed.Ref, "wrong-key", "rejected", "cryptographic signature verification failed"},
		{"signed as another repository", misnamed.Ref, "key", "rejected", "not accepted"},
		{"keyless", keyless.Ref, "keyless", "allowed", ""},
		{"keyless wrong email", keyless.Ref, "keyless-email", "rejected", `Required email "x@y.z" not found`},
		{"gpg", gpg.Ref, "gpg", "allowed", ""},
		{"gpg other key", gpg.Ref, "gpg-other", "rejected", "signature"},
		{"unsigned under reject", unsigned.Ref, "reject", "rejected", "is rejected by policy"},
		{"global, signed", keyed.Ref, "", "allowed", ""},
		{"global, unsigned", unsigned.Ref, "", "rejected", noSignature},
		{"global default scope", outside.Ref, "no-file", "rejected", "is rejected by policy"},
		{"namespace file over global", unsigned.Ref, "relaxed", "allowed", ""},
		{"malformed namespace file", keyed.Ref, "broken", "error", filepath.Join(e.nsDir, "broken.json")},
		{"invalid namespace", keyed.Ref, "../evil", "error", "invalid namespace"},
	} {
		res, cerr := c.Check(context.Background(), PullRequest{Ref: tc.ref, Namespace: tc.ns})
		viaService, serr := e.svc.Check(context.Background(), PullRequest{Ref: tc.ref, Namespace: tc.ns})
		_, perr := e.pull(tc.ref, tc.ns)
		if (cerr == nil) != (perr == nil) || (cerr != nil && cerr.Error() != perr.Error()) {
			t.Errorf("%s: check says %v, pull says %v", tc.name, cerr, perr)
		}
		if res.Outcome != tc.outcome || !strings.Contains(res.Reason, tc.reason) {
			t.Errorf("%s: outcome %q reason %q, want %q containing %q", tc.name, res.Outcome, res.Reason, tc.outcome, tc.reason)
		}
		if perr != nil && !strings.Contains(perr.Error(), res.Reason) {
			t.Errorf("%s: reason %q is not what the pull said: %v", tc.name, res.Reason, perr)
		}
		if viaService.Outcome != res.Outcome || viaService.Reason != res.Reason || (serr == nil) != (cerr == nil) {
			t.Errorf("%s: the daemon's Check (%+v) and the Checker (%+v) differ", tc.name, viaService, res)
		}
	}

	res, _ := c.Check(context.Background(), PullRequest{Ref: keyed.Ref, Namespace: "key"})
	want := CheckResult{Stage: "pull", Namespace: "key", Reference: keyed.Ref, Identity: keyed.Ref, ManifestDigest: keyed.ManifestDigest,
		Policy: filepath.Join(e.nsDir, "key.json"), Scope: `docker: ""`, Requirements: []string{"sigstoreSigned"}, Step: "policy", Outcome: "allowed"}
	res.PolicyDigest = ""
	if !reflect.DeepEqual(res, want) {
		t.Errorf("check result\n%+v, want\n%+v", res, want)
	}
	res, _ = c.Check(context.Background(), PullRequest{Ref: outside.Ref, Namespace: "no-file"})
	if res.Policy != e.global || res.Scope != "default" || !slices.Equal(res.Requirements, []string{"reject"}) {
		t.Errorf("check under the global default: %+v", res)
	}
	res, _ = c.Check(context.Background(), PullRequest{Ref: unsigned.Ref})
	if res.Scope != `docker: "`+e.reg.Addr+`/team"` {
		t.Errorf("check under the team scope: %+v", res)
	}
}

func TestCheckRefusesWhatTheLimitsRefuse(t *testing.T) {
	e := newEnv(t)
	reopen(e, func(c *Config) { c.MaxLayers = 1 }, nil)
	img := fixtures.PushImage(t, e.ref("app/layers:1"), 1024, fixtures.WithLayerCount(2))
	res, cerr := e.checker(func(c *Config) { c.MaxLayers = 1 }).Check(context.Background(), PullRequest{Ref: img.Ref})
	_, perr := e.pull(img.Ref, "")
	if !errors.Is(cerr, ErrImageLimit) || perr == nil || cerr.Error() != perr.Error() {
		t.Fatalf("check %v, pull %v", cerr, perr)
	}
	if res.Outcome != "rejected" || res.Step != "limits" || res.ManifestDigest != img.ManifestDigest {
		t.Fatalf("result %+v", res)
	}
}

// The create-time check of a stored image answers what CreateContainer's
// admission does, offline, and leaves the admission cache alone.
func TestCheckStoredAgreesWithAdmitFor(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	kl := fixtures.NewKeyless(t, "", "")
	signed := fixtures.PushImage(t, e.ref("app/signed:1"), 1024)
	key.Sign(t, signed.Ref)
	keyless := fixtures.PushImage(t, e.ref("app/keyless:1"), 1024)
	kl.Sign(t, keyless.Ref)
	unsigned := fixtures.PushImage(t, e.ref("app/unsigned:1"), 1024)
	e.setNamespace("loose", acceptAll)
	for _, ref := range []string{signed.Ref, keyless.Ref, unsigned.Ref} {
		e.mustPull(ref, "loose")
	}
	e.reg.Stop() // everything below is local
	e.setNamespace("strict", anyDocker(keyReq(key.PublicKeyPath, `{"type":"matchRepoDigestOrExact"}`)))
	e.setNamespace("keyless", anyDocker(keylessReq(kl.CAPath, kl.Issuer, kl.Email, kl.RekorPublicKeyPath, matchRepo)))
	e.setNamespace("reject", rejectAll)
	e.setNamespace("broken", `{"default":[`)

	c := e.checker(nil)
	files := e.storeFiles()
	for _, ns := range []string{"strict", "keyless", "loose", "reject", "broken", ""} {
		for _, ref := range []string{signed.Ref, signed.ConfigDigest, keyless.Ref, unsigned.Ref, unsigned.ConfigDigest, e.ref("app/signed:2")} {
			res, cerr := c.CheckStored(context.Background(), ns, ref)
			img, gerr := e.svc.Get(ref)
			if gerr != nil {
				if cerr == nil || res.Outcome != "error" || res.Step != "lookup" {
					t.Errorf("%s in %q: not stored, but check says %+v %v", ref, ns, res, cerr)
				}
				continue
			}
			_, aerr := e.svc.AdmitFor(context.Background(), AdmitRequest{Image: img, UserRef: ref, Namespace: ns})
			if (cerr == nil) != (aerr == nil) || (cerr != nil && cerr.Error() != aerr.Error()) {
				t.Errorf("%s in %q: check says %v, create says %v", ref, ns, cerr, aerr)
			}
			if res.Image != img.ID || res.Stage != "create" {
				t.Errorf("%s in %q: %+v", ref, ns, res)
			}
		}
	}
	if got := e.storeFiles(); !slices.Equal(got, files) {
		t.Errorf("stored checks changed the store:\nbefore %v\nafter  %v", files, got)
	}

	// Verified as the recorded reference when named by ID; never cached.
	e.setNamespace("strict2", anyDocker(keyReq(key.PublicKeyPath, matchRepo)))
	res, err := c.CheckStored(context.Background(), "strict2", signed.ConfigDigest)
	if err != nil || res.Identity != signed.Ref || !res.IdentityFromRecord || res.Scope != `docker: ""` || res.Policy != filepath.Join(e.nsDir, "strict2.json") {
		t.Fatalf("stored check by ID: %+v %v", res, err)
	}
	// The daemon's own service: its admission cache is the one at stake.
	if _, err := e.svc.CheckStored(context.Background(), "strict2", signed.Ref); err != nil {
		t.Fatal(err)
	}
	img, _ := e.svc.Get(signed.Ref)
	adm, err := e.svc.AdmitFor(context.Background(), AdmitRequest{Image: img, UserRef: signed.Ref, Namespace: "strict2"})
	if err != nil || adm.Cached {
		t.Fatalf("a stored check filled the admission cache: %+v %v", adm, err)
	}
	if _, err := e.svc.CheckStored(context.Background(), "strict2", signed.Ref); err != nil {
		t.Fatal(err)
	}
	dry := e.decisions.find("signature policy check (dry run)")
	if last := dry[len(dry)-1]; last["cached"] != "false" || last["stage"] != "create" {
		t.Errorf("a stored check used the admission cache: %v", last)
	}
	res, err = c.CheckStored(context.Background(), "strict2", unsigned.Ref)
	if res.Outcome != "rejected" || res.Identity != unsigned.Ref || res.Reason != "Source image rejected: "+noSignature || err == nil {
		t.Errorf("stored check of an unsigned image: %+v %v", res, err)
	}
}

// A check reaches the registry as a pull would: with the request's
// credentials, else the node's auth file, else none.
func TestCheckUsesThePullsCredentials(t *testing.T) {
	e := newEnv(t)
	img := fixtures.PushImage(t, e.ref("private/app:1"), 1024)
	e.reg.RequireBasicAuth("alice", "s3cret")
	c := e.checker(nil)
	res, cerr := c.Check(context.Background(), PullRequest{Ref: img.Ref})
	_, perr := e.pull(img.Ref, "")
	if cerr == nil || perr == nil || cerr.Error() != perr.Error() || res.Outcome != "error" {
		t.Fatalf("without credentials: check %+v %v, pull %v", res, cerr, perr)
	}
	if res, err := c.Check(context.Background(), PullRequest{Ref: img.Ref, Auth: &Auth{Username: "alice", Password: "s3cret"}}); err != nil || res.Outcome != "allowed" {
		t.Fatalf("with credentials: %+v %v", res, err)
	}
	authFile := filepath.Join(e.dir, "auth.json")
	writeFile(t, authFile, `{"auths":{"`+e.reg.Addr+`":{"auth":"YWxpY2U6czNjcmV0"}}}`)
	if res, err := e.checker(func(c *Config) { c.AuthFile = authFile }).Check(context.Background(), PullRequest{Ref: img.Ref}); err != nil || res.Outcome != "allowed" {
		t.Fatalf("with the node's auth file: %+v %v", res, err)
	}
}
