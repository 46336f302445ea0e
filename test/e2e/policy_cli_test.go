package e2e

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
)

// crivet policy lint, from the built binary, on the files a node would use:
// exit 0 on a working setup, exit 1 naming each broken file, warnings for
// a namespace file looser than the global policy.
func TestPolicyLintFromTheBinary(t *testing.T) {
	dir := t.TempDir()
	key := fixtures.NewSigstoreKey(t)
	global := filepath.Join(dir, "policy.json")
	nsDir := filepath.Join(dir, "policies.d")
	fixtures.WriteFile(t, global, keyPolicy(key.PublicKeyPath))
	fixtures.WriteFile(t, filepath.Join(nsDir, "strict.json"), keyPolicy(key.PublicKeyPath))
	lint := func(args ...string) (string, int) {
		cmd := exec.Command(crivetBin, append([]string{"policy", "lint"}, args...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	flags := []string{"--config", filepath.Join(dir, "absent.toml"), "--signature-policy", global, "--signature-policy-dir", nsDir}
	fixtures.WriteFile(t, filepath.Join(dir, "absent.toml"), "")
	if out, code := lint(flags...); code != 0 || !strings.Contains(out, "0 errors, 0 warnings") {
		t.Fatalf("working setup: exit %d\n%s", code, out)
	}
	fixtures.WriteFile(t, filepath.Join(nsDir, "loose.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`)
	if out, code := lint(flags...); code != 0 || !strings.Contains(out, "warning: "+filepath.Join(nsDir, "loose.json")+": accepts unsigned images") {
		t.Fatalf("looser namespace: exit %d\n%s", code, out)
	}
	fixtures.WriteFile(t, filepath.Join(nsDir, "strict.json"), keyPolicy(filepath.Join(dir, "rotated-away.pub")))
	out, code := lint(flags...)
	if code != 1 || !strings.Contains(out, "error: "+filepath.Join(nsDir, "strict.json")+": keyPath "+filepath.Join(dir, "rotated-away.pub")) {
		t.Fatalf("missing key: exit %d\n%s", code, out)
	}
	// One file on its own, as a global policy.
	if out, code := lint(append([]string{global}, flags...)...); code != 0 || !strings.Contains(out, "namespaces )") {
		t.Fatalf("single file: exit %d\n%s", code, out)
	}
}
