package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/sandbox"
	"github.com/crivet/crivet/test/fixtures"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
)

func mustValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := fixtures.MetricValue(fams, name, labels)
	if !ok {
		t.Fatalf("%s%v: no such series; family: %v", name, labels, fams[name])
	}
	if got != want {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
	}
}

type images struct{ n int }

func (i images) Count() (int, error) { return i.n, nil }

type pods struct {
	pods []*sandbox.Pod
	ctrs []*sandbox.Container
}

func (p pods) List() []*sandbox.Pod                   { return p.pods }
func (p pods) Containers(string) []*sandbox.Container { return p.ctrs }

type states map[string]runtime.State

func (s states) ContainerState(_ context.Context, id string) (runtime.Status, error) {
	st, ok := s[id]
	if !ok {
		return runtime.Status{}, errors.New("no such container")
	}
	return runtime.Status{State: st}, nil
}

func serve(t *testing.T, m *Metrics) string {
	t.Helper()
	srv, err := m.Serve("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + srv.Addr() + "/metrics"
}

// Every family the daemon feeds is exposed under its labels, with the
// values observed, and the inventory is read from its owners at scrape
// time.
func TestScrapeExposesEveryObservation(t *testing.T) {
	m := New()
	m.Decision("pull", "team-a", "allowed", policy.ReasonNone, 3*time.Millisecond)
	m.Decision("pull", "team-a", "rejected", policy.ReasonNoSignature, time.Millisecond)
	m.Decision("create", "team-a", "rejected", policy.ReasonNoSignature, time.Millisecond)
	m.Decision("image-volume", "team-b", "warned", policy.ReasonUntrustedKey, time.Millisecond)
	m.Decision("image-volume", "team-b", "warned", policy.ReasonUntrustedKey, time.Millisecond)
	m.AdmissionCache(true)
	m.AdmissionCache(false)
	m.AdmissionCache(false)
	m.PolicyLoaded("", nil)
	m.PolicyLoaded("team-a", &policy.FileError{Path: "x", Err: errors.New("bad")})
	m.CRIRequest("PullImage", codes.OK, 2*time.Second)
	m.CRIRequest("PullImage", codes.NotFound, time.Millisecond)
	m.CRIRequest("PullImage", codes.OK, time.Second)
	m.Pull(1000, time.Second, nil)
	m.Pull(24, time.Second, errors.New("stalled"))
	ready := &sandbox.Pod{ID: "p1", State: sandbox.Ready}
	m.Watch(Inventory{
		Images: images{3},
		Pods:   pods{pods: []*sandbox.Pod{ready, {ID: "p2", State: sandbox.NotReady}, {ID: "p3", State: sandbox.Ready}}, ctrs: []*sandbox.Container{{ID: "c1"}, {ID: "c2"}, {ID: "c3"}, {ID: "gone"}}},
		States: states{"c1": runtime.StateRunning, "c2": runtime.StateRunning, "c3": runtime.StateExited},
	})
	f := fixtures.ScrapeMetrics(t, serve(t, m))

	dec := "crivet_signature_decisions_total"
	mustValue(t, f, dec, map[string]string{"namespace": "team-a", "stage": "pull", "outcome": "allowed", "reason": "none"}, 1)
	mustValue(t, f, dec, map[string]string{"namespace": "team-a", "stage": "pull", "outcome": "rejected", "reason": "no_signature"}, 1)
	mustValue(t, f, dec, map[string]string{"namespace": "team-a", "stage": "create", "outcome": "rejected", "reason": "no_signature"}, 1)
	mustValue(t, f, dec, map[string]string{"namespace": "team-b", "stage": "image-volume", "outcome": "warned", "reason": "untrusted_key"}, 2)
	mustValue(t, f, "crivet_signature_decision_duration_seconds", map[string]string{"stage": "image-volume", "outcome": "warned"}, 2)
	mustValue(t, f, "crivet_admission_cache_requests_total", map[string]string{"result": "hit"}, 1)
	mustValue(t, f, "crivet_admission_cache_requests_total", map[string]string{"result": "miss"}, 2)
	mustValue(t, f, "crivet_policy_loads_total", map[string]string{"namespace": "", "result": "loaded"}, 1)
	mustValue(t, f, "crivet_policy_loads_total", map[string]string{"namespace": "team-a", "result": "error"}, 1)
	mustValue(t, f, "crivet_cri_requests_total", map[string]string{"method": "PullImage", "code": "OK"}, 2)
	mustValue(t, f, "crivet_cri_requests_total", map[string]string{"method": "PullImage", "code": "NotFound"}, 1)
	mustValue(t, f, "crivet_cri_request_duration_seconds", map[string]string{"method": "PullImage"}, 3)
	mustValue(t, f, "crivet_image_pull_bytes_total", map[string]string{}, 1024)
	mustValue(t, f, "crivet_image_pull_duration_seconds", map[string]string{"outcome": "ok"}, 1)
	mustValue(t, f, "crivet_image_pull_duration_seconds", map[string]string{"outcome": "error"}, 1)
	mustValue(t, f, "crivet_images", map[string]string{}, 3)
	mustValue(t, f, "crivet_pods", map[string]string{"state": "ready"}, 2)
	mustValue(t, f, "crivet_pods", map[string]string{"state": "notready"}, 1)
	mustValue(t, f, "crivet_containers", map[string]string{"state": "running"}, 2)
	mustValue(t, f, "crivet_containers", map[string]string{"state": "exited"}, 1)
	mustValue(t, f, "crivet_containers", map[string]string{"state": "created"}, 0)
	mustValue(t, f, "crivet_containers", map[string]string{"state": "unknown"}, 1)

	// The histogram's sum is in seconds.
	for _, s := range f["crivet_cri_request_duration_seconds"].GetMetric() {
		if got := s.GetHistogram().GetSampleSum(); got < 3 || got > 3.01 {
			t.Fatalf("PullImage duration sum %v s, want 3.001", got)
		}
	}
	// The Go runtime and process collectors are in the same registry.
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if f[name] == nil {
			t.Errorf("no %s family", name)
		}
	}

	// A scrape reads the owners anew: a pod gone is gone from the gauges.
	ready.State = sandbox.NotReady
	f = fixtures.ScrapeMetrics(t, serve(t, m))
	mustValue(t, f, "crivet_pods", map[string]string{"state": "notready"}, 2)
}

// A nil *Metrics (metrics_address unset) is safe to wire everywhere.
func TestNilMetricsObservesNothing(t *testing.T) {
	var m *Metrics
	m.Decision("pull", "", "allowed", "none", 0)
	m.AdmissionCache(true)
	m.PolicyLoaded("", nil)
	m.CRIRequest("Version", codes.OK, 0)
	m.Pull(1, 0, nil)
	m.Watch(Inventory{})
}

func TestListenAddressDefaultsToLoopback(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		loopback bool
	}{
		{":9090", "127.0.0.1:9090", true},
		{"127.0.0.1:9090", "127.0.0.1:9090", true},
		{"[::1]:9090", "[::1]:9090", true},
		{"localhost:9090", "localhost:9090", true},
		{"0.0.0.0:9090", "0.0.0.0:9090", false},
		{"10.1.2.3:9090", "10.1.2.3:9090", false},
	} {
		got, lo, err := ListenAddress(tc.in)
		if err != nil || got != tc.want || lo != tc.loopback {
			t.Errorf("ListenAddress(%q) = %q, %v, %v; want %q, %v", tc.in, got, lo, err, tc.want, tc.loopback)
		}
	}
	if _, _, err := ListenAddress("9090"); err == nil {
		t.Error("an address without a port was accepted")
	}
}

// The endpoint binds loopback when the host is left out: it answers on
// 127.0.0.1 and is not reachable on the host's other addresses.
func TestServeWithoutHostListensOnLoopbackOnly(t *testing.T) {
	m := New()
	srv, err := m.Serve(":0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	host, port, _ := splitHostPort(srv.Addr())
	if host != "127.0.0.1" {
		t.Fatalf("listening on %s, want 127.0.0.1", srv.Addr())
	}
	_ = fixtures.ScrapeMetrics(t, "http://"+srv.Addr()+"/metrics")
	if ip := nonLoopbackIP(); ip != "" {
		c := http.Client{Timeout: 2 * time.Second}
		if resp, err := c.Get(fmt.Sprintf("http://%s:%s/metrics", ip, port)); err == nil {
			resp.Body.Close()
			t.Fatalf("metrics reachable on %s", ip)
		}
	}
	// Close stops it.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + srv.Addr() + "/metrics"); err == nil {
		t.Fatal("metrics still served after Close")
	}
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }

// nonLoopbackIP is an IPv4 address of this host other than loopback, "" if none.
func nonLoopbackIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

// Namespaces past MaxNamespaces share one series, so a cluster that
// creates namespaces without end does not grow the decisions counter
// without end; the namespaces seen first keep their own series.
func TestDecisionNamespacesAreCapped(t *testing.T) {
	m := New()
	const extra = 50
	for i := range MaxNamespaces + extra {
		m.Decision("pull", fmt.Sprintf("ns-%03d", i), "allowed", policy.ReasonNone, time.Millisecond)
	}
	// A namespace with its own series keeps it after the cap is reached.
	m.Decision("pull", "ns-000", "allowed", policy.ReasonNone, time.Millisecond)
	f := fixtures.ScrapeMetrics(t, serve(t, m))
	dec := "crivet_signature_decisions_total"
	if n := len(f[dec].GetMetric()); n != MaxNamespaces+1 {
		t.Fatalf("%d series, want %d namespaces and %q", n, MaxNamespaces, OtherNamespace)
	}
	mustValue(t, f, dec, map[string]string{"namespace": "ns-000", "stage": "pull", "outcome": "allowed", "reason": "none"}, 2)
	mustValue(t, f, dec, map[string]string{"namespace": fmt.Sprintf("ns-%03d", MaxNamespaces-1), "stage": "pull", "outcome": "allowed", "reason": "none"}, 1)
	mustValue(t, f, dec, map[string]string{"namespace": OtherNamespace, "stage": "pull", "outcome": "allowed", "reason": "none"}, extra)
	if _, ok := fixtures.MetricValue(f, dec, map[string]string{"namespace": fmt.Sprintf("ns-%03d", MaxNamespaces), "stage": "pull", "outcome": "allowed", "reason": "none"}); ok {
		t.Fatal("a namespace past the cap has its own series")
	}
	if help := f[dec].GetHelp(); !strings.Contains(help, OtherNamespace) {
		t.Errorf("help %q does not say where further namespaces go", help)
	}
}

// Plugin names past MaxNRIPlugins share one series like namespaces do: a
// client connecting under endless names does not grow the calls counter.
func TestNRIPluginNamesAreCapped(t *testing.T) {
	m := New()
	const extra = 5
	for i := range MaxNRIPlugins + extra {
		m.NRIPluginCall(fmt.Sprintf("%02d-plugin", i), "CreateContainer", false)
	}
	m.NRIPluginCall("00-plugin", "CreateContainer", true)
	f := fixtures.ScrapeMetrics(t, serve(t, m))
	calls := "crivet_nri_plugin_calls_total"
	if n := len(f[calls].GetMetric()); n != MaxNRIPlugins+2 {
		t.Fatalf("%d series, want %d plugins' ok, one error and %q", n, MaxNRIPlugins, OtherNamespace)
	}
	mustValue(t, f, calls, map[string]string{"plugin": "00-plugin", "event": "CreateContainer", "result": "error"}, 1)
	mustValue(t, f, calls, map[string]string{"plugin": fmt.Sprintf("%02d-plugin", MaxNRIPlugins-1), "event": "CreateContainer", "result": "ok"}, 1)
	mustValue(t, f, calls, map[string]string{"plugin": OtherNamespace, "event": "CreateContainer", "result": "ok"}, extra)
}
