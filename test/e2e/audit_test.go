package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/test/fixtures"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func readAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	out, err := audit.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// --audit-log: each decision the daemon makes is a JSON line in the file
// before the CRI call answers, so kill -9 right after the answer loses
// nothing. A pull refused in a strict namespace, then a create refused at
// the create-time check.
func TestAuditLineIsWrittenBeforeTheAnswer(t *testing.T) {
	n := newNode(t)
	key := fixtures.NewSigstoreKey(t)
	img := fixtures.PushBusybox(t, n.reg.Ref("app/unsigned:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	n.setGlobal(`{"default":[{"type":"insecureAcceptAnything"}]}`)
	n.setNamespace("strict", keyPolicy(key.PublicKeyPath))
	path := filepath.Join(n.dir, "audit.log")
	n.extraArgs = []string{"--audit-log", path}
	n.start()
	rc, ic := n.clients()

	strictPull := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Namespace: "strict"}}}
	if _, err := ic.PullImage(ctx(t), strictPull); err == nil {
		t.Fatal("unsigned pull admitted in the strict namespace")
	}
	n.kill9()
	lines := readAudit(t, path)
	if len(lines) != 1 || lines[0].Stage != "pull" || lines[0].Outcome != "rejected" || lines[0].Namespace != "strict" ||
		lines[0].Reference != img.Ref || !strings.Contains(lines[0].Reason, "A signature was required") ||
		lines[0].Policy != filepath.Join(n.nsDir, "strict.json") || len(lines[0].Requirements) != 1 || lines[0].Requirements[0] != "sigstoreSigned" {
		t.Fatalf("audit after kill -9 following the refused pull: %+v", lines)
	}

	n.start()
	rc, ic = n.clients()
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}}); err != nil {
		t.Fatal(err)
	}
	podID := firstLine(n.mustCrictl("runp", n.podJSON("a", "strict", nil)))
	_, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Image: &runtimeapi.ImageSpec{Image: img.ConfigDigest, UserSpecifiedImage: img.Ref}, Linux: &runtimeapi.LinuxContainerConfig{}}})
	if err == nil {
		t.Fatal("unsigned image created in the strict namespace")
	}
	n.kill9()
	lines = readAudit(t, path)
	if len(lines) != 3 {
		t.Fatalf("want 3 audit lines (refused pull, allowed pull, refused create): %+v", lines)
	}
	if l := lines[1]; l.Stage != "pull" || l.Outcome != "allowed" || l.Namespace != "" {
		t.Errorf("allowed pull: %+v", l)
	}
	if l := lines[2]; l.Stage != "create" || l.Outcome != "rejected" || l.Namespace != "strict" || l.Pod != podID || l.Container != "c" || l.Digest != img.ManifestDigest {
		t.Errorf("refused create: %+v", l)
	}
	n.start()
	n.mustCrictl("stopp", podID)
	n.mustCrictl("rmp", podID)
}
