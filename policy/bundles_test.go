package policy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
)

// A file without sigstoreBundle requirements reaches the library byte for
// byte (podman and CRI-O read the same file); one with them is split: the
// library sees the rest, with a reject where only bundles stood.
func TestSigstoreBundleRequirementsAreTakenOutOfTheLibrarysDocument(t *testing.T) {
	plain := []byte(`{"default":[{"type":"reject"}],"transports":{"docker":{"reg.example":[{"type":"insecureAcceptAnything"}]}}}`)
	out, scopes, err := extractBundles(plain)
	if err != nil || scopes != nil || !bytes.Equal(out, plain) {
		t.Fatalf("plain file changed: %s, %v, %v", out, scopes, err)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pub")
	mixed := []byte(`{"default":[{"type":"reject"}],"transports":{"docker":{
		"reg.example/a":[{"type":"sigstoreBundle","keyPath":"` + key + `"}],
		"reg.example/b":[{"type":"insecureAcceptAnything"},{"type":"sigstoreBundle","keyPath":"` + key + `"}]}}}`)
	out, scopes, err = extractBundles(mixed)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "sigstoreBundle") {
		t.Fatalf("the library would see a sigstoreBundle: %s", out)
	}
	a, b := "docker\x00reg.example/a", "docker\x00reg.example/b"
	if len(scopes.reqs[a]) != 1 || len(scopes.reqs[b]) != 1 || !scopes.only[a] || scopes.only[b] {
		t.Fatalf("scopes: %+v", scopes)
	}
	if !strings.Contains(string(out), `"reg.example/a":[{"type":"reject"}]`) {
		t.Fatalf("bundle-only scope is not a reject for the library: %s", out)
	}
}

// A malformed sigstoreBundle requirement makes the file unusable (fail
// closed), like any policy error.
func TestMalformedSigstoreBundleRequirementFailsTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(path, []byte(`{"default":[{"type":"sigstoreBundle","keyPath":"/k.pub","subjectRegex":".*"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewStore(path, "").Global()
	var fe *FileError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "subjectRegex") {
		t.Fatalf("malformed requirement: %v", err)
	}
	findings := Lint(path, "")
	if len(findings) == 0 || findings[0].Severity != "error" {
		t.Fatalf("lint: %+v", findings)
	}
}

// The scope a decision reports (audit log, decision log) names the
// sigstoreBundle requirements as the file does, not the reject that
// stands in for them in the library's document.
func TestScopeNamesSigstoreBundleRequirements(t *testing.T) {
	dir := t.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "k.pub")
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.json")
	doc := `{"default":[{"type":"reject"}],"transports":{"docker":{
		"reg.example/a":[{"type":"sigstoreBundle","keyPath":"` + key + `"}],
		"reg.example/b":[{"type":"insecureAcceptAnything"},{"type":"sigstoreBundle","keyPath":"` + key + `"}]}}}`
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := NewStore(path, "").Global()
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{
		"reg.example/a:1": "sigstoreBundle",
		"reg.example/b:1": "insecureAcceptAnything,sigstoreBundle",
		"reg.example/c:1": "reject",
	} {
		named, err := reference.ParseNormalizedNamed(ref)
		if err != nil {
			t.Fatal(err)
		}
		ir, err := docker.NewReference(named)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(p.ScopeFor(ir).Requirements, ","); got != want {
			t.Errorf("%s: requirements %q, want %q", ref, got, want)
		}
	}
}
