package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const noSignature = "SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists"

func keyPolicy(pub string) string {
	return fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{"":[{"type":"sigstoreSigned","keyPath":%q,"signedIdentity":{"type":"matchRepository"}}]}}}`, pub)
}

func podConfig(t *testing.T, dir, namespace string) string {
	p := filepath.Join(dir, "pod-"+strings.NewReplacer("/", "_", ".", "_").Replace(namespace)+".json")
	js, _ := json.Marshal(map[string]any{"metadata": map[string]any{"name": "p", "namespace": namespace, "uid": "u-" + namespace, "attempt": 0}})
	fixtures.WriteFile(t, p, string(js))
	return p
}

// record is the verbose ImageStatus info crivet returns.
type record struct {
	ManifestDigest string `json:"manifestDigest"`
	References     []struct{ User string }
	Decisions      []struct {
		Namespace, PolicyPath, PolicyDigest string
		Allowed                             bool
	}
}

func TestCrictlImageLifecycleWithSignedImage(t *testing.T) {
	n := newNode(t)
	key := fixtures.NewSigstoreKey(t)
	img := fixtures.PushImage(t, n.reg.Ref("team/app:1"), 64<<10)
	key.Sign(t, img.Ref)
	n.setGlobal(keyPolicy(key.PublicKeyPath))
	n.start()

	out := n.mustCrictl("pull", img.Ref)
	if !strings.Contains(out, img.ConfigDigest) {
		t.Fatalf("crictl pull printed %q, want image ID %s", out, img.ConfigDigest)
	}

	var list struct {
		Images []struct {
			ID          string   `json:"id"`
			RepoTags    []string `json:"repoTags"`
			RepoDigests []string `json:"repoDigests"`
			Size        string   `json:"size"`
		} `json:"images"`
	}
	if err := json.Unmarshal([]byte(n.mustCrictl("images", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Images) != 1 || list.Images[0].ID != img.ConfigDigest || list.Images[0].RepoTags[0] != img.Ref ||
		list.Images[0].RepoDigests[0] != n.reg.Addr+"/team/app@"+img.ManifestDigest || list.Images[0].Size == "0" {
		t.Fatalf("crictl images: %+v", list.Images)
	}

	var inspect struct {
		Status struct {
			ID string `json:"id"`
		} `json:"status"`
		// crictl decodes the runtime's verbose "info" JSON in place.
		Info record `json:"info"`
	}
	raw := n.mustCrictl("inspecti", "-o", "json", img.Ref)
	if err := json.Unmarshal([]byte(raw), &inspect); err != nil {
		t.Fatalf("inspecti: %v\n%s", err, raw)
	}
	rec := inspect.Info
	if inspect.Status.ID != img.ConfigDigest || rec.ManifestDigest != img.ManifestDigest || len(rec.References) != 1 || rec.References[0].User != img.Ref ||
		len(rec.Decisions) != 1 || rec.Decisions[0].PolicyPath != n.global || !rec.Decisions[0].Allowed || rec.Decisions[0].PolicyDigest == "" {
		t.Fatalf("inspecti record: %s", raw)
	}

	var fsinfo struct {
		Status struct {
			ImageFilesystems []struct {
				UsedBytes struct{ Value string }      `json:"usedBytes"`
				FsID      struct{ Mountpoint string } `json:"fsId"`
			} `json:"imageFilesystems"`
		} `json:"status"`
	}
	raw = n.mustCrictl("imagefsinfo", "-o", "json")
	if err := json.Unmarshal([]byte(raw), &fsinfo); err != nil || len(fsinfo.Status.ImageFilesystems) != 1 ||
		fsinfo.Status.ImageFilesystems[0].UsedBytes.Value == "" || fsinfo.Status.ImageFilesystems[0].UsedBytes.Value == "0" ||
		!strings.HasPrefix(fsinfo.Status.ImageFilesystems[0].FsID.Mountpoint, n.root) {
		t.Fatalf("imagefsinfo: %v %s", err, raw)
	}

	n.mustCrictl("rmi", img.Ref)
	if out := n.mustCrictl("images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("images after rmi: %q", out)
	}
	// Removing what is gone succeeds (CRI RemoveImage is idempotent).
	_, ic := n.clients()
	if _, err := ic.RemoveImage(ctx(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: img.ConfigDigest}}); err != nil {
		t.Fatalf("RemoveImage of a missing image: %v", err)
	}
}

func TestCrictlRejectedPullHasKubeletsErrorShape(t *testing.T) {
	n := newNode(t)
	key := fixtures.NewSigstoreKey(t)
	n.setGlobal(keyPolicy(key.PublicKeyPath))
	unsigned := fixtures.PushImage(t, n.reg.Ref("team/unsigned:1"), 64<<10)
	n.start()

	_, stderr, err := n.crictl("pull", unsigned.Ref)
	if err == nil {
		t.Fatal("unsigned image pulled under a policy that requires a signature")
	}
	if !strings.Contains(stderr, "code = Unknown desc = "+noSignature) {
		t.Fatalf("crictl pull error: %s", stderr)
	}
	// Exactly the shape kubelet parses: code Unknown, message starting with the prefix.
	_, ic := n.clients()
	_, err = ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: unsigned.Ref}})
	st, _ := status.FromError(err)
	if st.Code() != codes.Unknown || st.Message() != noSignature {
		t.Fatalf("PullImage status %v %q, want Unknown %q", st.Code(), st.Message(), noSignature)
	}
	if out := n.mustCrictl("images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("rejected image is listed: %q", out)
	}
}

func TestCrictlPullWithPodConfigUsesTheNamespacePolicy(t *testing.T) {
	n := newNode(t)
	key := fixtures.NewSigstoreKey(t)
	n.setGlobal(keyPolicy(key.PublicKeyPath))
	n.setNamespace("relaxed", `{"default":[{"type":"insecureAcceptAnything"}]}`)
	n.setNamespace("broken", `{"default": [`)
	img := fixtures.PushImage(t, n.reg.Ref("team/app:1"), 64<<10)
	n.start()

	// No pod config → global policy → rejected.
	if _, stderr, err := n.crictl("pull", img.Ref); err == nil || !strings.Contains(stderr, noSignature) {
		t.Fatalf("pull without pod config: %v %s", err, stderr)
	}
	// A namespace without a file → global → rejected.
	if _, stderr, err := n.crictl("pull", "--pod-config", podConfig(t, n.dir, "other"), img.Ref); err == nil || !strings.Contains(stderr, noSignature) {
		t.Fatalf("pull in namespace other: %v %s", err, stderr)
	}
	// A malformed namespace file fails closed and says which file.
	if _, stderr, err := n.crictl("pull", "--pod-config", podConfig(t, n.dir, "broken"), img.Ref); err == nil || !strings.Contains(stderr, filepath.Join(n.nsDir, "broken.json")) {
		t.Fatalf("pull in namespace broken: %v %s", err, stderr)
	}
	// A path trick is an invalid argument.
	if _, stderr, err := n.crictl("pull", "--pod-config", podConfig(t, n.dir, "../policy"), img.Ref); err == nil || !strings.Contains(stderr, "code = InvalidArgument") {
		t.Fatalf("pull in namespace ../policy: %v %s", err, stderr)
	}
	// The namespace's own file admits it.
	n.mustCrictl("pull", "--pod-config", podConfig(t, n.dir, "relaxed"), img.Ref)
	raw := n.mustCrictl("inspecti", "-o", "json", img.Ref)
	var inspect struct {
		Info record `json:"info"`
	}
	if err := json.Unmarshal([]byte(raw), &inspect); err != nil {
		t.Fatal(err)
	}
	d := inspect.Info.Decisions
	if len(d) != 1 || d[0].Namespace != "relaxed" || d[0].PolicyPath != filepath.Join(n.nsDir, "relaxed.json") {
		t.Fatalf("record lacks the namespace decision: %s", raw)
	}
}

func TestRuntimeServiceAnswersHonestly(t *testing.T) {
	n := newNode(t)
	n.start()
	rc, _ := n.clients()
	v, err := rc.Version(ctx(t), &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != "crivet" || v.RuntimeApiVersion != "v1" {
		t.Fatalf("Version: %v %v", v, err)
	}
	st, err := rc.Status(ctx(t), &runtimeapi.StatusRequest{})
	if err != nil || len(st.Status.Conditions) != 2 || !st.Status.Conditions[0].Status || !st.Status.Conditions[1].Status {
		t.Fatalf("Status (runtime and network ready with a CNI config): %v %v", st, err)
	}
	cfg, err := rc.RuntimeConfig(ctx(t), &runtimeapi.RuntimeConfigRequest{})
	if err != nil || cfg.Linux.CgroupDriver != runtimeapi.CgroupDriver_CGROUPFS {
		t.Fatalf("RuntimeConfig: %v %v", cfg, err)
	}
	// A checkpoint with nowhere to write it is refused as such; one of a
	// container that is not there is NotFound.
	_, err = rc.CheckpointContainer(ctx(t), &runtimeapi.CheckpointContainerRequest{ContainerId: "x"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CheckpointContainer without a location: %v, want InvalidArgument", err)
	}
	_, err = rc.CheckpointContainer(ctx(t), &runtimeapi.CheckpointContainerRequest{ContainerId: "x", Location: filepath.Join(t.TempDir(), "x.tar")})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("CheckpointContainer of a missing container: %v, want NotFound", err)
	}
	// Idempotence: stopping and removing what is not there succeeds.
	if _, err := rc.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: "missing"}); err != nil {
		t.Fatalf("StopPodSandbox of a missing pod: %v", err)
	}
	if _, err := rc.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: "missing"}); err != nil {
		t.Fatalf("StopContainer of a missing container: %v", err)
	}
	if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "missing"}); err != nil {
		t.Fatalf("RemovePodSandbox of a missing pod: %v", err)
	}
}

func TestSecondInstanceOnSameRootRefuses(t *testing.T) {
	n := newNode(t)
	n.start()
	args := n.args()
	for i, a := range args {
		if a == "--listen" {
			args[i+1] = filepath.Join(n.dir, "second.sock")
		}
	}
	out, err := runCmd(crivetBin, args...)
	if err == nil || !strings.Contains(out, "already using root") {
		t.Fatalf("second instance: %v\n%s", err, out)
	}
}

func TestSIGTERMStopsCleanly(t *testing.T) {
	n := newNode(t)
	n.start()
	if err := n.stop(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, n.log)
	}
	if _, err := os.Stat(n.sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	// And it starts again on the same root.
	n.start()
}

// stallingProxy forwards to the registry. Blob pass passes whole, as do
// small ones; every other stops after half its bytes, so a pull commits
// the layer pass and then hangs mid-layer.
func stallingProxy(t *testing.T, target, pass string) (*httptest.Server, *atomic.Int32) {
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	var stalled atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && !strings.Contains(r.URL.Path, "config") {
			resp, err := http.Get("http://" + target + r.URL.Path)
			if err != nil {
				http.Error(w, err.Error(), 502)
				return
			}
			defer resp.Body.Close()
			if resp.ContentLength < 100<<10 || strings.HasSuffix(r.URL.Path, pass) {
				w.WriteHeader(resp.StatusCode)
				io.Copy(w, resp.Body)
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(resp.ContentLength))
			w.WriteHeader(resp.StatusCode)
			io.CopyN(w, resp.Body, resp.ContentLength/2)
			w.(http.Flusher).Flush()
			stalled.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv, &stalled
}

func TestDaemonKilledMidPullLeavesNothingAfterRestart(t *testing.T) {
	n := newNode(t)
	// Two big layers: the first completes, the second stalls.
	img := fixtures.PushImage(t, n.reg.Ref("team/big:1"), 4<<20, fixtures.WithLayerCount(2))
	proxy, stalled := stallingProxy(t, n.reg.Addr, firstLayer(t, n.reg.Addr, "team/big", "1"))
	proxyAddr := strings.TrimPrefix(proxy.URL, "http://")
	fixtures.WriteFile(t, n.regConf, fmt.Sprintf("unqualified-search-registries = []\n[[registry]]\nlocation = %q\ninsecure = true\n", proxyAddr))
	n.start()
	storage := func() []string {
		var files []string
		// Every file and non-empty directory of the layer store; empty
		// bookkeeping directories (tempdirs, l) are not image data.
		filepath.Walk(filepath.Join(n.root, "storage", "overlay"), func(p string, info os.FileInfo, err error) error {
			if err != nil || p == filepath.Join(n.root, "storage", "overlay") {
				return nil
			}
			if info.IsDir() {
				if ents, _ := os.ReadDir(p); len(ents) == 0 {
					return nil
				}
			}
			files = append(files, p)
			return nil
		})
		return files
	}
	before := storage()
	ref := proxyAddr + "/team/big:1"
	done := make(chan error, 1)
	go func() { _, _, err := n.crictl("pull", ref); done <- err }()
	deadline := time.Now().Add(60 * time.Second)
	for stalled.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if stalled.Load() == 0 {
		t.Fatalf("pull never reached the big layer\n%s", n.log)
	}
	// Kill only once a layer is committed: the interesting leftover is a
	// complete layer with no image.
	layersFile := filepath.Join(n.root, "storage", "overlay-layers", "layers.json")
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(layersFile); strings.Contains(string(b), `"id"`) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b, _ := os.ReadFile(layersFile); !strings.Contains(string(b), `"id"`) {
		t.Fatalf("no layer committed before the stall")
	}
	n.kill9()
	<-done
	n.start()
	if after := storage(); len(after) != len(before) {
		t.Fatalf("store after an interrupted pull and restart has %d entries, before %d:\n%v\n%v\n%s", len(after), len(before), before, after, n.log)
	}
	if out := n.mustCrictl("images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("half-pulled image listed: %q", out)
	}
	_ = img
}

// firstLayer reads the digest of an image's bottom layer from the registry.
func firstLayer(t *testing.T, registry, repo, tag string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://"+registry+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct{ Layers []struct{ Digest string } }
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || len(m.Layers) < 2 {
		t.Fatalf("manifest of %s:%s: %v %+v", repo, tag, err, m)
	}
	return m.Layers[0].Digest
}
