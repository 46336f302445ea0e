package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/image"
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

// The password can stay out of argv: --creds-file FILE and --creds - read
// USER:PASS, less one trailing newline, and agree with --creds USER:PASS.
func TestPolicyCheckCredentialsFromFileAndStdin(t *testing.T) {
	dir := t.TempDir()
	file := func(content string) string {
		p := filepath.Join(dir, fmt.Sprintf("creds%d", len(content)))
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(stdin string, args ...string) (*image.Auth, error) {
		cmd := newPolicyCheckCmd()
		cmd.SetIn(strings.NewReader(stdin))
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		creds, _ := cmd.Flags().GetString("creds")
		credsFile, _ := cmd.Flags().GetString("creds-file")
		stored, _ := cmd.Flags().GetBool("stored")
		return checkCredentials(cmd, creds, credsFile, stored)
	}
	want := image.Auth{Username: "robot", Password: "s3:cr et "}
	for name, tc := range map[string]struct {
		stdin string
		args  []string
	}{
		"argv":              {"", []string{"--creds", "robot:s3:cr et "}},
		"file":              {"", []string{"--creds-file", file("robot:s3:cr et ")}},
		"file with newline": {"", []string{"--creds-file", file("robot:s3:cr et \n")}},
		"file with CRLF":    {"", []string{"--creds-file", file("robot:s3:cr et \r\n")}},
		"stdin":             {"robot:s3:cr et \n", []string{"--creds", "-"}},
	} {
		got, err := run(tc.stdin, tc.args...)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if got == nil || *got != want {
			t.Errorf("%s: credentials %+v, want %+v", name, got, want)
		}
	}
	if got, err := run("", "--namespace", "x"); got != nil || err != nil {
		t.Errorf("no credentials flag: %+v, %v; want none", got, err)
	}
	for name, tc := range map[string]struct {
		stdin string
		args  []string
		want  string
	}{
		"both":         {"", []string{"--creds", "a:b", "--creds-file", file("a:b")}, "give one"},
		"no colon":     {"", []string{"--creds-file", file("justapassword\n")}, "want USER:PASS"},
		"empty stdin":  {"", []string{"--creds", "-"}, "want USER:PASS"},
		"missing file": {"", []string{"--creds-file", filepath.Join(dir, "absent")}, "no such file"},
		"stored":       {"", []string{"--stored", "--creds-file", file("a:b")}, "offline"},
		"too long":     {strings.Repeat("x", maxCredsSize+1), []string{"--creds", "-"}, "more than"},
	} {
		_, err := run(tc.stdin, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, tc.want)
		} else if strings.Contains(err.Error(), "justapassword") {
			t.Errorf("%s: error %q shows the file's content", name, err)
		}
	}
	// The help says how to keep the password out of argv.
	help := newPolicyCheckCmd().Long
	for _, s := range []string{"--creds-file FILE", "--creds -"} {
		if !strings.Contains(help, s) {
			t.Errorf("help does not mention %q", s)
		}
	}
}
