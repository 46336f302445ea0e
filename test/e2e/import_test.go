package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
	"go.podman.io/storage"
)

const archivesOnlyPolicy = `{"default":[{"type":"reject"}],"transports":{"docker-archive":{"":[{"type":"insecureAcceptAnything"}]}}}`

// imageCLI runs `crivet image ...` with the node's configuration.
func (n *node) imageCLI(args ...string) (string, error) {
	fixtures.WriteFile(n.t, filepath.Join(n.dir, "none.toml"), "")
	out, err := exec.Command(crivetBin, append(append([]string{"image"}, args...), n.args()...)...).CombinedOutput()
	return string(out), err
}

// An archive imported into the store of a RUNNING daemon is listed by
// crictl at once; a strict namespace refuses to create from it (unsigned,
// from a file), kube-system, whose policy accepts docker-archive, runs it.
func TestImportIntoRunningDaemonThenCreateUnderNamespacePolicies(t *testing.T) {
	n := newNode(t)
	src := fixtures.PushBusybox(t, n.reg.Ref("build/pause:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	archive := filepath.Join(n.dir, "pause.tar")
	fixtures.SaveDockerArchive(t, src.Ref, archive, "registry.k8s.io/pause:3.10")
	other := fixtures.PushBusybox(t, n.reg.Ref("build/other:1"), fixtures.BusyboxConfig{Cmd: []string{"true"}, Files: map[string]string{"/other": "1"}})
	otherArchive := filepath.Join(n.dir, "other.tar")
	fixtures.SaveDockerArchive(t, other.Ref, otherArchive, "example.com/other:1")
	n.reg.Stop() // an air-gapped node
	n.setGlobal(archivesOnlyPolicy)
	n.setNamespace("strict", `{"default":[{"type":"reject"}]}`)
	n.setNamespace("kube-system", archivesOnlyPolicy)
	n.start()

	out, err := n.imageCLI("import", archive)
	if err != nil || !strings.Contains(out, "imported "+src.ConfigDigest+" registry.k8s.io/pause:3.10") {
		t.Fatalf("crivet image import: %v\n%s", err, out)
	}
	if images := n.mustCrictl("images"); !strings.Contains(images, "registry.k8s.io/pause") || !strings.Contains(images, "3.10") {
		t.Fatalf("crictl images does not list the import:\n%s\ncrivet log:\n%s", images, n.log)
	}
	n.mustCrictl("inspecti", "registry.k8s.io/pause:3.10")

	// The global policy decides the import: under reject, nothing is stored.
	n.setGlobal(`{"default":[{"type":"reject"}]}`)
	out, err = n.imageCLI("import", otherArchive)
	if err == nil || !strings.Contains(out, "SignatureValidationFailed") || !strings.Contains(out, "Source image rejected") {
		t.Fatalf("import under a reject policy: %v\n%s", err, out)
	}
	if images := n.mustCrictl("images"); strings.Contains(images, "example.com/other") {
		t.Fatalf("a refused import is listed:\n%s", images)
	}

	strictPod := n.podJSON("s", "strict", nil)
	strictID := firstLine(n.mustCrictl("runp", strictPod))
	_, stderr, err := n.crictl("create", strictID, n.ctrJSON("c", "registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", nil), strictPod)
	if err == nil || !strings.Contains(stderr, "SignatureValidationFailed: Source image rejected: Running image docker-archive:"+archive) {
		t.Fatalf("strict namespace created from an unsigned import: %v %s", err, stderr)
	}
	sysPod := n.podJSON("p", "kube-system", nil)
	sysID := firstLine(n.mustCrictl("runp", sysPod))
	cid := firstLine(n.mustCrictl("create", sysID, n.ctrJSON("pause", "registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", nil), sysPod))
	n.mustCrictl("start", cid)
	if ps := n.mustCrictl("ps", "-q", "--state", "Running"); !strings.Contains(ps, cid) {
		t.Fatalf("imported image does not run in kube-system: %s\n%s", ps, n.log)
	}

	// Export reads the served store; the archive imports back as the same image.
	exported := filepath.Join(n.dir, "exported.tar")
	if out, err := n.imageCLI("export", "registry.k8s.io/pause:3.10", exported); err != nil {
		t.Fatalf("crivet image export: %v\n%s", err, out)
	}
	if out, err := n.imageCLI("list"); err != nil || !strings.Contains(out, "docker-archive:"+archive) {
		t.Fatalf("crivet image list: %v\n%s", err, out)
	}
	n.cleanupPods()
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	// No daemon, a fresh root: the import fills the store the next start serves.
	n.root = filepath.Join(n.dir, "root2")
	n.setGlobal(archivesOnlyPolicy)
	if out, err := n.imageCLI("import", exported); err != nil || !strings.Contains(out, "imported "+src.ConfigDigest) {
		t.Fatalf("import of the export, no daemon: %v\n%s", err, out)
	}
	n.start()
	if images := n.mustCrictl("images"); !strings.Contains(images, "registry.k8s.io/pause") {
		t.Fatalf("the restarted daemon does not list the import:\n%s", images)
	}
}

// kill -9 of `crivet image import` at any moment, beside a running daemon:
// the daemon keeps serving, the image is listed whole or not at all, and
// after the daemon's next start nothing of an interrupted import is left
// in the store. The import then succeeds.
func TestKilledImportLeavesNoHalfImage(t *testing.T) {
	n := newNode(t)
	img := fixtures.PushLayers(t, n.reg.Ref("big/img:1"), fixtures.BombTar(t, 48<<20), fixtures.BombTar(t, 24<<20), fixtures.BombTar(t, 8<<20))
	archive := filepath.Join(n.dir, "big.tar")
	fixtures.SaveDockerArchive(t, img.Ref, archive, "example.com/big:1")
	n.reg.Stop()
	n.setGlobal(archivesOnlyPolicy)
	n.start()
	fixtures.WriteFile(t, filepath.Join(n.dir, "none.toml"), "")

	completed := 0
	for i, d := range []time.Duration{5, 30, 80, 150, 250, 400, 600, 900} {
		cmd := exec.Command(crivetBin, append([]string{"image", "import", archive}, n.args()...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		images := n.mustCrictl("images") // the daemon serves, its store reads
		if strings.Contains(images, "example.com/big") {
			completed++
			if out := n.mustCrictl("inspecti", "-o", "go-template", "--template", "{{.status.id}}", "example.com/big:1"); !strings.Contains(out, img.ConfigDigest) {
				t.Fatalf("round %d (kill after %dms): listed image is %q, want %s", i, d, out, img.ConfigDigest)
			}
			n.mustCrictl("rmi", "example.com/big:1")
		}
	}
	t.Logf("%d of 8 killed imports had completed", completed)
	if out, err := n.imageCLI("import", archive); err != nil || !strings.Contains(out, "imported "+img.ConfigDigest) {
		t.Fatalf("import after the kills: %v\n%s", err, out)
	}
	n.mustCrictl("rmi", "example.com/big:1")

	// The start-up sweep removes what an interrupted import committed.
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	n.start()
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	n.withStore(t, func(s storage.Store) {
		layers, err := s.Layers()
		if err != nil {
			t.Fatal(err)
		}
		images, _ := s.Images()
		if len(layers) != 0 || len(images) != 0 {
			t.Errorf("left in the store after the sweep: %d layers, %d images", len(layers), len(images))
		}
	})
	if ents, _ := os.ReadDir(filepath.Join(n.root, "tmp")); len(ents) != 0 {
		t.Errorf("temporary import data left: %d entries in %s", len(ents), filepath.Join(n.root, "tmp"))
	}
}
