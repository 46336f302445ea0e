package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// The text output shows each bundle a check considered: where it was
// found, what it signs, who signed it, the evidence and the verdict, with
// a refused bundle's reason class.
func TestPolicyCheckPrintsBundles(t *testing.T) {
	logged := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	res := image.CheckResult{Stage: "pull", Reference: "reg.example/app:1", Outcome: "allowed", Step: "policy",
		Bundles: []image.BundleCheck{{
			VerifiedAs: "reg.example/app:1", Source: "referrers-api", Repository: "reg.example/app", Digest: "sha256:b1",
			FoundFor: "sha256:index", FoundVia: "index", Subject: "sha256:index", ViaIndex: true,
			Signer: &image.BundleSigner{SAN: "https://github.com/org/app/.github/workflows/release.yml@refs/tags/v1",
				Issuer: "https://token.actions.githubusercontent.com", SourceRepositoryURI: "https://github.com/org/app"},
			TransparencyLog: []image.BundleLogEntry{{LogID: "c0ffee", Index: 42, Kind: "dsse/0.0.1", IntegratedTime: logged}},
			Timestamps:      []time.Time{logged},
			Outcome:         "admitted",
		}, {
			VerifiedAs: "reg.example/app:1", Source: "tag-schema", Repository: "reg.example/app", Digest: "sha256:b2",
			FoundFor: "sha256:manifest", FoundVia: "manifest", Outcome: "rejected", ReasonClass: "untrusted_key",
			Reason: "sigstore bundle rejected (untrusted_key): key /etc/k.pub: failed to verify signature",
		}, {
			VerifiedAs: "reg.example/copy:1", Source: "tag-schema", Repository: "reg.example/app", Digest: "sha256:b3",
			FoundFor: "sha256:manifest", FoundVia: "manifest", Outcome: "not_used",
			Reason: "found in repository reg.example/app: a bundle vouches only for images of the repository it was found in, not reg.example/copy",
		}},
	}
	var out strings.Builder
	printCheck(&out, res, "")
	text := out.String()
	for _, want := range []string{
		"bundle 1:",
		"sha256:b1\n",
		"found:",
		"referrers-api in reg.example/app, for the index sha256:index\n",
		"sha256:index (the index the manifest was chosen from)\n",
		"https://github.com/org/app/.github/workflows/release.yml@refs/tags/v1 (issuer https://token.actions.githubusercontent.com)\n",
		"source repository:",
		"c0ffee #42 (dsse/0.0.1, integrated 2026-12-07T10:00:00Z)\n",
		"timestamp:",
		"admitted\n",
		"tag-schema in reg.example/app, for the manifest sha256:manifest\n",
		"rejected (untrusted_key)\n",
		"key /etc/k.pub: failed to verify signature\n",
		"reg.example/copy:1\n",
		"not used\n",
		"a bundle vouches only for images of the repository it was found in, not reg.example/copy\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// A refused bundle's claims are not shown as verified facts.
	if strings.Count(text, "signer:") != 1 || strings.Count(text, "signs:") != 1 {
		t.Errorf("signer or subject shown for a bundle that was not admitted:\n%s", text)
	}
}
