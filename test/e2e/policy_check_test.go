package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// checkResult is `crivet policy check --json` as a script reads it.
type checkResult struct {
	Stage, Namespace, Reference, Image, Identity string
	IdentityFromRecord                           bool
	ManifestDigest, Policy, PolicyDigest, Scope  string
	Requirements                                 []string
	Step, Outcome, Reason                        string
}

// policyCheck runs the built binary with the daemon's own flags.
func (n *node) policyCheck(t *testing.T, args ...string) (checkResult, int, string) {
	t.Helper()
	cmd := exec.Command(crivetBin, append(append([]string{"policy", "check"}, args...), n.args()...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var res checkResult
	if strings.Contains(strings.Join(args, " "), "--json") {
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("policy check %v: exit %d, output is not one JSON object: %v\n%s\n%s", args, code, err, out.String(), errb.String())
		}
	}
	return res, code, out.String() + errb.String()
}

// podYAML is a pod config as an operator writes it for crictl, in YAML.
func podYAML(t *testing.T, dir, namespace string) string {
	p := filepath.Join(dir, "pod-"+namespace+".yaml")
	fixtures.WriteFile(t, p, fmt.Sprintf("metadata:\n  name: p\n  namespace: %s\n  uid: u-%s\n  attempt: 0\nlinux: {}\n", namespace, namespace))
	return p
}

// crivet policy check answers what the running daemon answers: for each
// of the project's signature cases, its exit code and reason against
// crictl pull's, and with --stored against CreateContainer's. It stores
// nothing and writes no audit line.
func TestPolicyCheckAnswersWhatTheDaemonDoes(t *testing.T) {
	n := newNode(t)
	key, otherKey := fixtures.NewSigstoreKey(t), fixtures.NewSigstoreKey(t)
	kl := fixtures.NewKeyless(t, "https://issuer.crivet.test", "dev@crivet.test")
	g, otherG := fixtures.NewGPGKey(t), fixtures.NewGPGKey(t)
	push := func(repoTag string) fixtures.Image {
		return fixtures.PushBusybox(t, n.reg.Ref(repoTag), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}, Files: map[string]string{"/which": repoTag}})
	}
	keyed, keyless, gpg, unsigned := push("team/keyed:1"), push("team/keyless:1"), push("team/gpg:1"), push("team/unsigned:1")
	outside := push("outside/app:1")
	misnamed := push("team/misnamed:1")
	key.Sign(t, keyed.Ref)
	key.Sign(t, misnamed.Ref, fixtures.WithIdentity(n.reg.Ref("elsewhere/app:1")))
	kl.Sign(t, keyless.Ref)
	g.Sign(t, gpg.Ref, n.lookaside)

	keyReq := func(pub string) string {
		return fmt.Sprintf(`{"type":"sigstoreSigned","keyPath":%q,"signedIdentity":{"type":"matchRepository"}}`, pub)
	}
	keylessReq := func(email string) string {
		return fmt.Sprintf(`{"type":"sigstoreSigned","fulcio":{"caPath":%q,"oidcIssuer":%q,"subjectEmail":%q},"rekorPublicKeyPath":%q,"signedIdentity":{"type":"matchRepository"}}`,
			kl.CAPath, kl.Issuer, email, kl.RekorPublicKeyPath)
	}
	gpgReq := func(pub string) string {
		return fmt.Sprintf(`{"type":"signedBy","keyType":"GPGKeys","keyPath":%q}`, pub)
	}
	anyDocker := func(req string) string {
		return fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{"":[%s]}}}`, req)
	}
	n.setGlobal(fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{%q:[%s]}}}`, n.reg.Addr+"/team", keyReq(key.PublicKeyPath)))
	for ns, js := range map[string]string{
		"key": anyDocker(keyReq(key.PublicKeyPath)), "wrong-key": anyDocker(keyReq(otherKey.PublicKeyPath)),
		"keyless": anyDocker(keylessReq(kl.Email)), "keyless-email": anyDocker(keylessReq("x@y.z")),
		"gpg": anyDocker(gpgReq(g.PublicKeyPath)), "gpg-other": anyDocker(gpgReq(otherG.PublicKeyPath)),
		"reject": `{"default":[{"type":"reject"}]}`, "relaxed": `{"default":[{"type":"insecureAcceptAnything"}]}`,
		"broken": `{"default": [`,
	} {
		n.setNamespace(ns, js)
	}
	auditPath := filepath.Join(n.dir, "audit.log")
	n.extraArgs = []string{"--audit-log", auditPath}
	n.start()
	rc, _ := n.clients()

	// noTrace runs a check and requires that it left the daemon's audit
	// log and image list as they were.
	noTrace := func(args ...string) (checkResult, int, string) {
		t.Helper()
		audited, images := len(readAudit(t, auditPath)), n.mustCrictl("images", "-q")
		res, code, out := n.policyCheck(t, args...)
		if got := len(readAudit(t, auditPath)); got != audited {
			t.Fatalf("policy check %v wrote %d audit lines", args, got-audited)
		}
		if got := n.mustCrictl("images", "-q"); got != images {
			t.Fatalf("policy check %v changed the stored images: %q → %q", args, images, got)
		}
		return res, code, out
	}
	// agree requires the check's exit code and reason to be the daemon's answer.
	agree := func(what string, res checkResult, code int, out string, daemonErr error, daemonSays string) {
		t.Helper()
		// crictl's log lines quote the gRPC message.
		daemonSays = strings.ReplaceAll(daemonSays, `\"`, `"`)
		switch {
		case daemonErr == nil && code != 0:
			t.Errorf("%s: the daemon allows, the check exits %d: %+v\n%s", what, code, res, out)
		case daemonErr != nil && code == 0:
			t.Errorf("%s: the check allows, the daemon says %s", what, daemonSays)
		case daemonErr != nil && !strings.Contains(daemonSays, res.Reason):
			t.Errorf("%s: the check's reason %q is not the daemon's answer %s", what, res.Reason, daemonSays)
		}
	}

	for _, tc := range []struct {
		name, ref, ns string
		code          int
		reason        string
	}{
		{"sigstore key", keyed.Ref, "key", 0, ""},
		{"sigstore unsigned", unsigned.Ref, "key", 1, "A signature was required, but no signature exists"},
		{"sigstore wrong key", keyed.Ref, "wrong-key", 1, "cryptographic signature verification failed"},
		{"signed as another repository", misnamed.Ref, "key", 1, "not accepted"},
		{"keyless (Fulcio and Rekor)", keyless.Ref, "keyless", 0, ""},
		{"keyless, another email", keyless.Ref, "keyless-email", 1, `Required email "x@y.z" not found`},
		{"gpg simple signing", gpg.Ref, "gpg", 0, ""},
		{"gpg, another key", gpg.Ref, "gpg-other", 1, "signature"},
		{"unsigned under reject", unsigned.Ref, "reject", 1, "is rejected by policy"},
		{"global policy, team scope", keyed.Ref, "", 0, ""},
		{"global policy, unsigned", unsigned.Ref, "", 1, "A signature was required"},
		{"global default for a namespace without a file", outside.Ref, "no-file", 1, "is rejected by policy"},
		{"namespace file over the global policy", unsigned.Ref, "relaxed", 0, ""},
		{"malformed namespace file", keyed.Ref, "broken", 2, filepath.Join(n.nsDir, "broken.json")},
	} {
		args := []string{"--json"}
		pullArgs := []string{"pull"}
		if tc.ns != "" {
			args = append(args, "--pod-config", podYAML(t, n.dir, tc.ns))
			pullArgs = append(pullArgs, "--pod-config", podConfig(t, n.dir, tc.ns))
		}
		res, code, out := noTrace(append(args, tc.ref)...)
		if code != tc.code || !strings.Contains(res.Reason, tc.reason) || res.Namespace != tc.ns || res.Stage != "pull" {
			t.Errorf("%s: exit %d %+v; want exit %d, reason containing %q\n%s", tc.name, code, res, tc.code, tc.reason, out)
		}
		_, stderr, err := n.crictl(append(pullArgs, tc.ref)...)
		agree(tc.name, res, code, out, err, stderr)
	}

	// The decision's details, and --namespace over --pod-config.
	res, code, _ := noTrace("--json", "--pod-config", podYAML(t, n.dir, "reject"), "--namespace", "key", keyed.Ref)
	if code != 0 || res.Namespace != "key" || res.Policy != filepath.Join(n.nsDir, "key.json") || res.Identity != keyed.Ref ||
		res.ManifestDigest != keyed.ManifestDigest || res.Scope != `docker: ""` || strings.Join(res.Requirements, ",") != "sigstoreSigned" ||
		res.Step != "policy" || res.Outcome != "allowed" || !strings.HasPrefix(res.PolicyDigest, "sha256:") {
		t.Errorf("check details: exit %d %+v", code, res)
	}
	_, code, out := noTrace(unsigned.Ref)
	for _, want := range []string{"policy:", n.global + " (global)", `scope:         docker: "` + n.reg.Addr + `/team"`, "requirements:  sigstoreSigned", "outcome:       rejected"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("text output lacks %q (exit %d):\n%s", want, code, out)
		}
	}

	// --stored answers what CreateContainer answers, offline, beside the
	// running daemon.
	n.reg.Stop()
	pods := map[string]string{}
	podOf := func(ns string) string {
		if pods[ns] == "" {
			pods[ns] = firstLine(n.mustCrictl("runp", n.podJSON("p", ns, nil)))
		}
		return pods[ns]
	}
	for i, tc := range []struct {
		name, ref, ns string
		code          int
	}{
		{"sigstore key", keyed.Ref, "key", 0},
		{"sigstore key, by image ID", keyed.ConfigDigest, "key", 0},
		{"sigstore unsigned", unsigned.Ref, "key", 1},
		{"unsigned by ID", unsigned.ConfigDigest, "key", 1},
		{"keyless", keyless.Ref, "keyless", 0},
		{"keyless, another email", keyless.Ref, "keyless-email", 1},
		{"gpg", gpg.Ref, "gpg", 0},
		{"gpg, another key", gpg.Ref, "gpg-other", 1},
		{"reject", keyed.Ref, "reject", 1},
		{"namespace file over the global policy", unsigned.Ref, "relaxed", 0},
		{"not stored", n.reg.Ref("team/never:1"), "key", 2},
	} {
		res, code, out := noTrace("--json", "--stored", "--namespace", tc.ns, tc.ref)
		if code != tc.code || res.Stage != "create" {
			t.Errorf("stored %s: exit %d %+v, want %d\n%s", tc.name, code, res, tc.code, out)
		}
		_, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podOf(tc.ns),
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("c%d", i)},
				Image: &runtimeapi.ImageSpec{Image: tc.ref, UserSpecifiedImage: tc.ref}, Linux: &runtimeapi.LinuxContainerConfig{}}})
		agree("stored "+tc.name, res, code, out, err, status.Convert(err).Message())
	}
}
