package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
)

const (
	acceptAll = `{"default":[{"type":"insecureAcceptAnything"}]}`
	rejectAll = `{"default":[{"type":"reject"}]}`
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newStore(t *testing.T) (*Store, string, string) {
	dir := t.TempDir()
	global := filepath.Join(dir, "policy.json")
	nsDir := filepath.Join(dir, "policies.d")
	write(t, global, rejectAll)
	write(t, filepath.Join(nsDir, "team-a.json"), acceptAll)
	return NewStore(global, nsDir), global, nsDir
}

func TestNamespaceSelectsItsOwnFileElseGlobal(t *testing.T) {
	s, global, nsDir := newStore(t)
	for _, tc := range []struct{ ns, want string }{
		{"", global},
		{"team-a", filepath.Join(nsDir, "team-a.json")},
		{"team-b", global}, // no file of its own
		{"kube-system", global},
	} {
		p, err := s.ForNamespace(tc.ns)
		if err != nil {
			t.Fatalf("%q: %v", tc.ns, err)
		}
		if p.Path != tc.want {
			t.Errorf("namespace %q: policy %s, want %s", tc.ns, p.Path, tc.want)
		}
		wantNS := tc.ns
		if tc.want == global {
			wantNS = ""
		}
		if p.Namespace != wantNS {
			t.Errorf("namespace %q: Policy.Namespace %q, want %q", tc.ns, p.Namespace, wantNS)
		}
	}
}

func TestInvalidNamespaceNeverTouchesTheFilesystem(t *testing.T) {
	s, _, nsDir := newStore(t)
	// A file an attacker would love to reach via a path trick.
	write(t, filepath.Join(filepath.Dir(nsDir), "evil.json"), acceptAll)
	for _, ns := range []string{"../evil", "a/b", "..", ".", "a..b/c", "UPPER", "-lead", "trail-", "a_b", "a.b", strings.Repeat("a", 64), "team-a\x00", " team-a", "/etc/passwd"} {
		_, err := s.ForNamespace(ns)
		if !errors.Is(err, ErrInvalidNamespace) {
			t.Errorf("namespace %q: err %v, want ErrInvalidNamespace", ns, err)
		}
	}
	if _, err := s.ForNamespace(strings.Repeat("a", 63)); err != nil {
		t.Errorf("63-character namespace refused: %v", err)
	}
}

func TestMalformedNamespaceFileFailsClosed(t *testing.T) {
	s, _, nsDir := newStore(t)
	bad := filepath.Join(nsDir, "broken.json")
	write(t, bad, `{"default":[{"type":"insecureAcceptAnything"}`) // truncated
	_, err := s.ForNamespace("broken")
	if err == nil {
		t.Fatal("malformed namespace policy was accepted (fell back?)")
	}
	if !strings.Contains(err.Error(), bad) {
		t.Errorf("error does not name the file: %v", err)
	}
	// Semantically invalid (unknown requirement type) is malformed too.
	write(t, bad, `{"default":[{"type":"acceptEverythingPlease"}]}`)
	if _, err := s.ForNamespace("broken"); err == nil || !strings.Contains(err.Error(), "acceptEverythingPlease") {
		t.Errorf("unknown requirement type: err %v", err)
	}
}

func TestUnreadableNamespaceFileFailsClosed(t *testing.T) {
	s, _, nsDir := newStore(t)
	// A directory where the file should be cannot be read as a policy.
	if err := os.MkdirAll(filepath.Join(nsDir, "odd.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ForNamespace("odd"); err == nil || !strings.Contains(err.Error(), "odd.json") {
		t.Fatalf("unreadable namespace policy: err %v", err)
	}
}

func TestMalformedOrMissingGlobalFailsClosed(t *testing.T) {
	dir := t.TempDir()
	global := filepath.Join(dir, "policy.json")
	s := NewStore(global, filepath.Join(dir, "none"))
	if _, err := s.ForNamespace("anything"); err == nil || !strings.Contains(err.Error(), global) {
		t.Fatalf("missing global: err %v", err)
	}
	write(t, global, `not json`)
	if _, err := s.ForNamespace(""); err == nil || !strings.Contains(err.Error(), global) {
		t.Fatalf("malformed global: err %v", err)
	}
}

func TestEditTakesEffectAndParsesOncePerChange(t *testing.T) {
	s, _, nsDir := newStore(t)
	path := filepath.Join(nsDir, "team-a.json")
	p1, err := s.ForNamespace("team-a")
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := s.ForNamespace("team-a")
	if p1 != p2 {
		t.Error("unchanged file was parsed again")
	}
	write(t, path, rejectAll)
	// Same-second edits must be seen too: force an identical mtime.
	fi, _ := os.Stat(path)
	_ = os.Chtimes(path, time.Time{}, fi.ModTime())
	p3, err := s.ForNamespace("team-a")
	if err != nil {
		t.Fatal(err)
	}
	if p3 == p1 || p3.Digest == p1.Digest {
		t.Fatal("edited policy not reloaded")
	}
	// Removing the namespace file falls back to the global policy.
	os.Remove(path)
	p4, _ := s.ForNamespace("team-a")
	if p4.Namespace != "" {
		t.Errorf("after removal: %s, want global", p4.Path)
	}
}

func TestReferencedFilesListsEveryKeyAndCAFile(t *testing.T) {
	doc := `{"default":[{"type":"reject"}],"transports":{"docker":{
	  "a":[{"type":"sigstoreSigned","keyPath":"/k/a.pub","signedIdentity":{"type":"matchRepository"}}],
	  "b":[{"type":"sigstoreSigned","keyPaths":["/k/b1.pub","/k/b2.pub"],"rekorPublicKeyPaths":["/k/r1.pub"]}],
	  "c":[{"type":"sigstoreSigned","fulcio":{"caPath":"/k/ca.pem","oidcIssuer":"x","subjectEmail":"y"},"rekorPublicKeyPath":"/k/rekor.pub"}],
	  "d":[{"type":"sigstoreSigned","pki":{"caRootsPath":"/k/roots.pem","caIntermediatesPath":"/k/int.pem"}}],
	  "e":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k/ring.gpg"}],
	  "f":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k/a.pub"}]}}}`
	got := referencedFiles([]byte(doc))
	want := []string{"/k/a.pub", "/k/b1.pub", "/k/b2.pub", "/k/ca.pem", "/k/int.pem", "/k/r1.pub", "/k/rekor.pub", "/k/ring.gpg", "/k/roots.pem"}
	if !slices.Equal(got, want) {
		t.Fatalf("referenced files %v, want %v", got, want)
	}
}

func TestFingerprintChangesWithReferencedFileContent(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pub")
	global := filepath.Join(dir, "policy.json")
	write := func(path, s string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write(key, "one")
	write(global, `{"default":[{"type":"sigstoreSigned","keyPath":"`+key+`","signedIdentity":{"type":"matchRepository"}}]}`)
	p, err := NewStore(global, "").Global()
	if err != nil {
		t.Fatal(err)
	}
	a := p.Fingerprint()
	if a == p.Digest || a != p.Fingerprint() {
		t.Fatalf("fingerprint %s not stable or equal to the file digest", a)
	}
	write(key, "two")
	b := p.Fingerprint()
	if b == a {
		t.Fatal("fingerprint unchanged after the key file changed")
	}
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if c := p.Fingerprint(); c == a || c == b {
		t.Fatal("fingerprint unchanged after the key file was removed")
	}
}

func TestRequirementTypesFollowTheMostSpecificScope(t *testing.T) {
	dir := t.TempDir()
	global := filepath.Join(dir, "policy.json")
	doc := `{"default":[{"type":"reject"}],"transports":{"docker":{
	  "reg.example":[{"type":"insecureAcceptAnything"}],
	  "reg.example/team":[{"type":"sigstoreSigned","keyPath":"/k.pub","signedIdentity":{"type":"matchRepository"}}],
	  "reg.example/team/app:1":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k.gpg"},{"type":"sigstoreSigned","keyPath":"/k.pub"}]}}}`
	if err := os.WriteFile(global, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := NewStore(global, "").Global()
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string][]string{
		"reg.example/team/app:1":   {"signedBy", "sigstoreSigned"},
		"reg.example/team/app:2":   {"sigstoreSigned"},
		"reg.example/team/x/y:1":   {"sigstoreSigned"},
		"reg.example/other:1":      {"insecureAcceptAnything"},
		"elsewhere.example/team:1": {"reject"},
	} {
		scope := map[string]string{
			"reg.example/team/app:1":   `docker: "reg.example/team/app:1"`,
			"reg.example/team/app:2":   `docker: "reg.example/team"`,
			"reg.example/team/x/y:1":   `docker: "reg.example/team"`,
			"reg.example/other:1":      `docker: "reg.example"`,
			"elsewhere.example/team:1": `default`,
		}[ref]
		named, err := reference.ParseNormalizedNamed(ref)
		if err != nil {
			t.Fatal(err)
		}
		dref, err := docker.NewReference(named)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.RequirementTypes(dref); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", ref, got, want)
		}
		if got := p.ScopeFor(dref).String(); got != scope {
			t.Errorf("%s: scope %s, want %s", ref, got, scope)
		}
	}
	// The transport's catch-all scope is a scope of its own, not the default.
	if err := os.WriteFile(global, []byte(`{"default":[{"type":"reject"}],"transports":{"docker":{"":[{"type":"insecureAcceptAnything"}]}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err = NewStore(global, "").Global(); err != nil {
		t.Fatal(err)
	}
	named, _ := reference.ParseNormalizedNamed("elsewhere.example/team:1")
	dref, _ := docker.NewReference(named)
	if got := p.ScopeFor(dref); got.String() != `docker: ""` || !slices.Equal(got.Requirements, []string{"insecureAcceptAnything"}) {
		t.Errorf("catch-all scope: %+v", got)
	}
}
