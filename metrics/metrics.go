// Package metrics owns crivet's Prometheus metrics: one private registry,
// the collectors in it, and the HTTP endpoint that serves them. The
// packages that observe things declare small interfaces (image.Observer,
// server.Observer, policy.Store.OnLoad) that *Metrics implements; none of
// them imports Prometheus.
//
// Cardinality stays bounded: labels are namespaces, CRI method names,
// gRPC codes, decision stages, outcomes and reason classes, never image
// names, references or IDs. Namespaces are client-chosen, so the
// decisions counter keeps at most MaxNamespaces of them (see capped).
package metrics

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/codes"
)

// Metrics is the registry and every collector in it. A nil *Metrics is
// valid and observes nothing, so callers wire it whether or not metrics
// are enabled.
type Metrics struct {
	reg *prometheus.Registry

	decisions       *prometheus.CounterVec
	decisionSeconds *prometheus.HistogramVec
	admitCache      *prometheus.CounterVec
	policyLoads     *prometheus.CounterVec
	criRequests     *prometheus.CounterVec
	criSeconds      *prometheus.HistogramVec
	pullBytes       prometheus.Counter
	pullSeconds     *prometheus.HistogramVec

	namespaces capped
	nri        *nriMetrics
}

// MaxNamespaces is how many distinct namespaces the decisions counter
// labels by name; the decisions of any further namespace are counted
// under OtherNamespace. A cluster creating namespaces without end (one per
// CI run, say) would otherwise grow the series, and Prometheus' memory,
// for as long as the daemon runs.
const MaxNamespaces = 100

// OtherNamespace labels the decisions of namespaces past MaxNamespaces. It
// starts with an underscore, which no Kubernetes namespace name can, so it
// is never mistaken for a real namespace's series.
const OtherNamespace = "_other"

// capped is a label whose values clients choose (namespaces, NRI plugin
// names): the first max values seen since the daemon started get a series
// of their own, kept until it stops (a series that vanished would break
// rate() over it); any further value is counted under OtherNamespace.
type capped struct {
	max  int
	mu   sync.Mutex
	seen map[string]struct{}
}

// label is the label value for v.
func (c *capped) label(v string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[v]; ok {
		return v
	}
	if len(c.seen) >= c.max {
		return OtherNamespace
	}
	if c.seen == nil {
		c.seen = map[string]struct{}{}
	}
	c.seen[v] = struct{}{}
	return v
}

// Buckets: an offline admission from the cache takes microseconds, a cold
// one ~20 ms, a decision at pull fetches signatures from the registry.
var (
	decisionBuckets = []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	criBuckets      = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	pullBuckets     = []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

// New returns the registry with crivet's collectors and the Go runtime
// and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg:        prometheus.NewRegistry(),
		namespaces: capped{max: MaxNamespaces},
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crivet_signature_decisions_total",
			Help: fmt.Sprintf("Signature policy decisions, by pod namespace (the first %d seen since start; later ones count under %q), stage (pull, create, image-volume), outcome (allowed, rejected, warned, error) and reason class.", MaxNamespaces, OtherNamespace),
		}, []string{"namespace", "stage", "outcome", "reason"}),
		decisionSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crivet_signature_decision_duration_seconds",
			Help:    "Time taken by signature policy decisions, by stage and outcome.",
			Buckets: decisionBuckets,
		}, []string{"stage", "outcome"}),
		admitCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crivet_admission_cache_requests_total",
			Help: "Look-ups of the create-time admission cache, by result (hit, miss).",
		}, []string{"result"}),
		policyLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crivet_policy_loads_total",
			Help: `Signature policy files parsed anew (result "loaded": first use or a change) or found unusable (result "error"), by namespace ("" for the global policy).`,
		}, []string{"namespace", "result"}),
		criRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crivet_cri_requests_total",
			Help: "CRI requests, by method and gRPC code.",
		}, []string{"method", "code"}),
		criSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crivet_cri_request_duration_seconds",
			Help:    "Time taken by CRI requests (for a stream, how long it was open), by method.",
			Buckets: criBuckets,
		}, []string{"method"}),
		pullBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crivet_image_pull_bytes_total",
			Help: "Bytes of image blobs received from registries.",
		}),
		pullSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crivet_image_pull_duration_seconds",
			Help:    "Time taken by image pulls (one per registry tried), by outcome (ok, error).",
			Buckets: pullBuckets,
		}, []string{"outcome"}),
	}
	m.nri = newNRIMetrics()
	m.reg.MustRegister(m.nri.collectors()...)
	m.reg.MustRegister(m.decisions, m.decisionSeconds, m.admitCache, m.policyLoads, m.criRequests, m.criSeconds,
		m.pullBytes, m.pullSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the collectors live (tests, and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Decision counts one signature decision (image.Observer).
func (m *Metrics) Decision(stage, namespace, outcome, reason string, took time.Duration) {
	if m == nil {
		return
	}
	m.decisions.WithLabelValues(m.namespaces.label(namespace), stage, outcome, reason).Inc()
	m.decisionSeconds.WithLabelValues(stage, outcome).Observe(took.Seconds())
}

// AdmissionCache counts one admission-cache look-up (image.Observer).
func (m *Metrics) AdmissionCache(hit bool) {
	if m == nil {
		return
	}
	result := "miss"
	if hit {
		result = "hit"
	}
	m.admitCache.WithLabelValues(result).Inc()
}

// Pull records one ended pull (image.Observer).
func (m *Metrics) Pull(bytes uint64, took time.Duration, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.pullBytes.Add(float64(bytes))
	m.pullSeconds.WithLabelValues(outcome).Observe(took.Seconds())
}

// PolicyLoaded counts a policy file parsed or found unusable (policy.Store.OnLoad).
func (m *Metrics) PolicyLoaded(namespace string, err error) {
	if m == nil {
		return
	}
	result := "loaded"
	if err != nil {
		result = "error"
	}
	m.policyLoads.WithLabelValues(namespace, result).Inc()
}

// CRIRequest records one finished CRI request (server.Observer).
func (m *Metrics) CRIRequest(method string, code codes.Code, took time.Duration) {
	if m == nil {
		return
	}
	m.criRequests.WithLabelValues(method, code.String()).Inc()
	m.criSeconds.WithLabelValues(method).Observe(took.Seconds())
}
