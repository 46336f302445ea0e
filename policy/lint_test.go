package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
)

func TestLintAcceptsAWorkingSetupWithRealKeys(t *testing.T) {
	dir := t.TempDir()
	key := fixtures.NewSigstoreKey(t)
	gpg := fixtures.NewGPGKey(t)
	keyless := fixtures.NewKeyless(t, "https://issuer.example", "dev@example.com")
	global := filepath.Join(dir, "policy.json")
	write(t, global, fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{
	  "reg.example/a":[{"type":"sigstoreSigned","keyPath":%q,"signedIdentity":{"type":"matchRepository"}}],
	  "reg.example/b":[{"type":"signedBy","keyType":"GPGKeys","keyPath":%q}],
	  "reg.example/c":[{"type":"sigstoreSigned","fulcio":{"caPath":%q,"oidcIssuer":"https://issuer.example","subjectEmail":"dev@example.com"},"rekorPublicKeyPath":%q,"signedIdentity":{"type":"matchRepository"}}]}}}`,
		key.PublicKeyPath, gpg.PublicKeyPath, keyless.CAPath, keyless.RekorPublicKeyPath))
	nsDir := filepath.Join(dir, "policies.d")
	write(t, filepath.Join(nsDir, "team-a.json"), rejectAll)
	if f := Lint(global, nsDir); len(f) != 0 {
		t.Fatalf("findings on a working setup: %v", f)
	}
}

func TestLintFindsWhatWouldFailAndWhatLooksUnmeant(t *testing.T) {
	dir := t.TempDir()
	key := fixtures.NewSigstoreKey(t)
	global := filepath.Join(dir, "policy.json")
	sig := func(keyPath string) string {
		return fmt.Sprintf(`[{"type":"sigstoreSigned","keyPath":%q,"signedIdentity":{"type":"matchRepository"}}]`, keyPath)
	}
	notAKey := filepath.Join(dir, "not-a-key.pub")
	write(t, notAKey, "hello\n")
	write(t, global, fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{"reg.example":%s,"reg.example/x":%s,"reg.example/y":%s}}}`,
		sig(key.PublicKeyPath), sig(filepath.Join(dir, "missing.pub")), sig(notAKey)))
	nsDir := filepath.Join(dir, "policies.d")
	write(t, filepath.Join(nsDir, "broken.json"), `{"default":[{"type":"reject"}],"bogus":1}`)
	write(t, filepath.Join(nsDir, "Not_A_Namespace.json"), rejectAll)
	write(t, filepath.Join(nsDir, "notes.txt"), "x")
	write(t, filepath.Join(nsDir, "loose.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`)
	write(t, filepath.Join(nsDir, "scoped.json"), `{"default":[{"type":"reject"}],"transports":{"docker":{"reg.example/team":[{"type":"insecureAcceptAnything"}]}}}`)

	got := map[string]bool{}
	for _, f := range Lint(global, nsDir) {
		got[f.Severity+" "+filepath.Base(f.File)+" "+f.Message] = true
	}
	for _, want := range []string{
		"error policy.json keyPath " + filepath.Join(dir, "missing.pub"),
		"error policy.json keyPath " + notAKey + ": no PEM PUBLIC KEY block",
		"error broken.json ",
		"warning Not_A_Namespace.json ",
		"warning notes.txt ",
		"warning loose.json accepts unsigned images for every docker image",
		"warning scoped.json accepts unsigned images for scope reg.example/team, where the global policy requires sigstoreSigned",
	} {
		found := false
		for g := range got {
			if strings.HasPrefix(g, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no finding %q in %v", want, got)
		}
	}
	if len(got) != 7 {
		t.Errorf("%d findings, want 7: %v", len(got), got)
	}
	if f := Lint(filepath.Join(dir, "absent.json"), ""); len(f) != 1 || f[0].Severity != "error" {
		t.Errorf("missing global policy: %v", f)
	}
}

// A sigstoreBundle requirement is linted as the daemon would use it: a
// trustedRootPath that cannot be read is an error (every check with it
// would refuse), a subjectRegExp matching any identity a warning, and the
// file is flagged as crivet's own (podman, CRI-O and skopeo refuse it).
func TestLintSigstoreBundleRequirement(t *testing.T) {
	dir := t.TempDir()
	global := filepath.Join(dir, "policy.json")
	root := filepath.Join(dir, "missing-trusted-root.json")
	write(t, global, fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{"reg.example/app":[
	  {"type":"sigstoreBundle","trustedRootPath":%q,"subjectRegExp":".*","issuer":"https://issuer.example"}]}}}`, root))
	var got []string
	for _, f := range Lint(global, "") {
		if f.File != global {
			t.Errorf("finding for %s, want %s: %v", f.File, global, f)
		}
		got = append(got, f.Severity+" "+f.Message)
	}
	for _, want := range []string{
		"warning uses sigstoreBundle requirements: crivet reads this file",
		"error sigstoreBundle in docker reg.example/app: ",
		`warning sigstoreBundle in docker reg.example/app: subjectRegExp ".*" matches any value`,
	} {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, want) }) {
			t.Errorf("no finding %q in %q", want, got)
		}
	}
	for _, g := range got {
		if strings.HasPrefix(g, "error ") && !strings.Contains(g, root) {
			t.Errorf("error %q does not name the trusted root %s", g, root)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d findings, want 3: %q", len(got), got)
	}
}

// A keyless sigstoreBundle requirement for a CI workflow, with anchored
// matchers and a real trusted root, lints clean but for the note that
// other tools cannot read the file; a trusted root that lacks what the
// requirement's thresholds need (a CA, a log, a timestamp authority, a CT
// log) is a warning for each, since no bundle could then be admitted.
func TestLintSigstoreBundleTrustedRoot(t *testing.T) {
	dir := t.TempDir()
	ca := fixtures.NewBundleCA(t)
	req := func(root, extra string) string {
		return fmt.Sprintf(`{"type":"sigstoreBundle","trustedRootPath":%q,"subjectRegExp":%q,"issuer":%q,"sourceRepositoryURI":%q%s}`,
			root, `^https://github\.com/org/repo/\.github/workflows/release\.yml@refs/tags/v[0-9.]+$`, fixtures.GitHubIssuer, fixtures.ReleaseRepoURI, extra)
	}
	global := filepath.Join(dir, "policy.json")
	write(t, global, fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{"reg.example/app":[%s]}}}`, req(ca.TrustedRootPath, `,"timestamps":1`)))
	findings := Lint(global, "")
	if len(findings) != 1 || !strings.HasPrefix(findings[0].Message, "uses sigstoreBundle requirements") {
		t.Fatalf("findings on a working keyless requirement: %v", findings)
	}

	var doc map[string]any
	if err := json.Unmarshal(readTestFile(t, ca.TrustedRootPath), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"certificateAuthorities", "tlogs", "ctlogs", "timestampAuthorities"} {
		delete(doc, k)
	}
	empty, _ := json.Marshal(doc)
	emptyRoot := filepath.Join(dir, "empty_root.json")
	write(t, emptyRoot, string(empty))
	write(t, global, fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{"reg.example/app":[%s]}}}`, req(emptyRoot, `,"timestamps":1`)))
	var got []string
	for _, f := range Lint(global, "") {
		got = append(got, f.Severity+" "+f.Message)
	}
	for _, want := range []string{"no certificate authority", "no transparency log, and transparencyLog is 1",
		"no timestamp authority, and timestamps is 1", "no certificate transparency log, and certificateTransparency is 1"} {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, "warning ") && strings.Contains(g, want) }) {
			t.Errorf("no warning %q in %q", want, got)
		}
	}
}

func readTestFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
