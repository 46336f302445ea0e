package policy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
