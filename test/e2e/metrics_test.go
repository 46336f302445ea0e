package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	dto "github.com/prometheus/client_model/go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// freePort is a loopback TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// series is the value of the series of family name whose labels are
// exactly labels ("k=v" pairs); -1 when there is none.
func series(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	want := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		want[k] = v
	}
	if v, ok := fixtures.MetricValue(fams, name, want); ok {
		return v
	}
	return -1
}

// --metrics-address: the real daemon's /metrics, after a pull admitted and
// a pull rejected in a strict namespace, a create rejected and a container
// with an image volume running there, counts each decision by namespace, stage, outcome and
// reason class, each CRI call by method and code, the bytes pulled, and
// the pods, containers and images the node holds.
func TestMetricsCountWhatTheDaemonDid(t *testing.T) {
	n := newNode(t)
	key := fixtures.NewSigstoreKey(t)
	signed := fixtures.PushBusybox(t, n.reg.Ref("app/signed:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	key.Sign(t, signed.Ref)
	unsigned := fixtures.PushBusybox(t, n.reg.Ref("app/unsigned:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}, Files: map[string]string{"/unsigned": "yes\n"}})
	n.setNamespace("strict", keyPolicy(key.PublicKeyPath))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	n.extraArgs = []string{"--metrics-address", addr}
	n.start()
	rc, ic := n.clients()

	pull := func(ref, ns string) error {
		req := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}
		if ns != "" {
			req.SandboxConfig = &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Namespace: ns}}
		}
		_, err := ic.PullImage(ctx(t), req)
		return err
	}
	if err := pull(signed.Ref, "strict"); err != nil {
		t.Fatal(err)
	}
	if err := pull(unsigned.Ref, "strict"); err == nil {
		t.Fatal("unsigned image pulled in the strict namespace")
	}
	// Pulled under the (loose) global policy, then refused at create.
	if err := pull(unsigned.Ref, ""); err != nil {
		t.Fatal(err)
	}
	pod := n.podJSON("m", "strict", nil)
	podID := firstLine(n.mustCrictl("runp", pod))
	_, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "bad"},
			Image: &runtimeapi.ImageSpec{Image: unsigned.Ref, UserSpecifiedImage: unsigned.Ref}, Linux: &runtimeapi.LinuxContainerConfig{}}})
	if err == nil {
		t.Fatal("unsigned image created in the strict namespace")
	}
	// The signed image runs, with itself as an image volume.
	ctrID := firstLine(n.mustCrictl("create", podID, n.ctrJSON("good", signed.Ref, signed.Ref, map[string]any{
		"mounts": []map[string]any{{"container_path": "/vol", "readonly": true, "image": map[string]any{"image": signed.Ref, "user_specified_image": signed.Ref}}}}), pod))
	n.mustCrictl("start", ctrID)

	f := fixtures.ScrapeMetrics(t, "http://"+addr+"/metrics")
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"crivet_signature_decisions_total", []string{"namespace=strict", "stage=pull", "outcome=allowed", "reason=none"}, 1},
		{"crivet_signature_decisions_total", []string{"namespace=strict", "stage=pull", "outcome=rejected", "reason=no_signature"}, 1},
		{"crivet_signature_decisions_total", []string{"namespace=", "stage=pull", "outcome=allowed", "reason=none"}, 1},
		{"crivet_signature_decisions_total", []string{"namespace=strict", "stage=create", "outcome=rejected", "reason=no_signature"}, 1},
		{"crivet_signature_decisions_total", []string{"namespace=strict", "stage=create", "outcome=allowed", "reason=none"}, 1},
		{"crivet_signature_decisions_total", []string{"namespace=strict", "stage=image-volume", "outcome=allowed", "reason=none"}, 1},
		{"crivet_signature_decision_duration_seconds", []string{"stage=pull", "outcome=allowed"}, 2},
		{"crivet_cri_requests_total", []string{"method=PullImage", "code=OK"}, 2},
		{"crivet_cri_requests_total", []string{"method=PullImage", "code=Unknown"}, 1}, // SignatureValidationFailed
		{"crivet_cri_requests_total", []string{"method=CreateContainer", "code=Unknown"}, 1},
		{"crivet_cri_requests_total", []string{"method=CreateContainer", "code=OK"}, 1},
		{"crivet_cri_requests_total", []string{"method=StartContainer", "code=OK"}, 1},
		{"crivet_cri_request_duration_seconds", []string{"method=PullImage"}, 3},
		{"crivet_admission_cache_requests_total", []string{"result=miss"}, 2},
		{"crivet_admission_cache_requests_total", []string{"result=hit"}, 1}, // the volume: the image's own admission
		{"crivet_policy_loads_total", []string{"namespace=strict", "result=loaded"}, 1},
		{"crivet_policy_loads_total", []string{"namespace=", "result=loaded"}, 1},
		{"crivet_image_pull_duration_seconds", []string{"outcome=ok"}, 2},
		{"crivet_images", nil, 2},
		{"crivet_pods", []string{"state=ready"}, 1},
		{"crivet_pods", []string{"state=notready"}, 0},
		{"crivet_containers", []string{"state=running"}, 1},
		{"crivet_containers", []string{"state=exited"}, 0},
	} {
		if got := series(f, c.name, c.labels...); got != c.want {
			t.Errorf("%s{%s} = %v, want %v (-1: no such series)", c.name, strings.Join(c.labels, ","), got, c.want)
		}
	}
	if got := series(f, "crivet_image_pull_bytes_total"); got <= 0 {
		t.Errorf("crivet_image_pull_bytes_total = %v, want > 0", got)
	}
	// Bounded labels: no series names an image.
	for name, fam := range f {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), n.reg.Addr) || strings.Contains(l.GetValue(), "sha256:") {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("crivet log:\n%s", n.log)
	}

	// The pod stopped: the next scrape asks the owners again.
	n.mustCrictl("stopp", podID)
	f = fixtures.ScrapeMetrics(t, "http://"+addr+"/metrics")
	if got := series(f, "crivet_pods", "state=notready"); got != 1 {
		t.Errorf("after stopp: crivet_pods{state=notready} = %v, want 1", got)
	}
	if got := series(f, "crivet_containers", "state=exited"); got != 1 {
		t.Errorf("after stopp: crivet_containers{state=exited} = %v, want 1", got)
	}
	n.mustCrictl("rmp", podID)
	// The endpoint goes with the daemon.
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Error("metrics still served after the daemon stopped")
	}
}
