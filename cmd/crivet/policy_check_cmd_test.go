package main

import (
	"os"
	"path/filepath"
	"testing"
)

// --pod-config takes what crictl takes: JSON or YAML, unknown fields ignored.
func TestPodNamespaceReadsJSONAndYAML(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"pod.json": `{"metadata":{"name":"p","namespace":"team-a","uid":"u","attempt":1},"log_directory":"/tmp","linux":{"security_context":{"namespace_options":{"network":2}}},"future_field":1}`,
		"pod.yaml": "metadata:\n  name: p\n  namespace: team-a\n  uid: u\nlog_directory: /tmp\nlinux:\n  security_context:\n    namespace_options:\n      network: NODE\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if ns, err := podNamespace(p); err != nil || ns != "team-a" {
			t.Errorf("%s: %q %v", name, ns, err)
		}
	}
	p := filepath.Join(dir, "bad.yaml")
	os.WriteFile(p, []byte("metadata: [\n"), 0o644)
	if _, err := podNamespace(p); err == nil {
		t.Error("a malformed pod config was read")
	}
}
