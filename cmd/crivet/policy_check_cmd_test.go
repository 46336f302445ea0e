package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The check's own flags, the daemon's flags and IMAGE may come in any
// order; daemon flags keep their values, whatever they look like.
func TestSplitCheckArgsSeparatesOwnAndDaemonFlags(t *testing.T) {
	own := flag.NewFlagSet("", flag.ContinueOnError)
	own.String("namespace", "", "")
	own.Bool("json", false, "")
	ownArgs, daemonArgs, positional := splitCheckArgs(own, []string{
		"--config", "/etc/crivet.toml", "--json", "--namespace", "prod", "reg/app:1",
		"--signature-policy=/p.json", "-max-layers", "3", "--root", "-weird-dir",
	})
	if want := []string{"--json", "--namespace", "prod"}; !slices.Equal(ownArgs, want) {
		t.Errorf("own %v, want %v", ownArgs, want)
	}
	if want := []string{"--config", "/etc/crivet.toml", "--signature-policy=/p.json", "-max-layers", "3", "--root", "-weird-dir"}; !slices.Equal(daemonArgs, want) {
		t.Errorf("daemon %v, want %v", daemonArgs, want)
	}
	if want := []string{"reg/app:1"}; !slices.Equal(positional, want) {
		t.Errorf("positional %v, want %v", positional, want)
	}
}

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
