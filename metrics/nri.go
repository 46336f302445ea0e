package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxNRIPlugins is how many distinct NRI plugin names get a series of
// their own; a plugin names itself when it connects, so a client
// connecting under endless names would otherwise grow the series.
const MaxNRIPlugins = 32

// nriMetrics are the NRI collectors (registered in New).
type nriMetrics struct {
	calls   *prometheus.CounterVec
	plugins prometheus.Gauge
	refused *prometheus.CounterVec

	// plugins name themselves when they connect.
	names capped
}

func newNRIMetrics() *nriMetrics {
	return &nriMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crivet_nri_plugin_calls_total",
			Help: fmt.Sprintf("Calls to NRI plugins, by plugin (idx-name; the first %d seen, later ones under %q), event (RunPodSandbox, CreateContainer, Synchronize, ...) and result (ok, error: the plugin failed, timed out or went away).", MaxNRIPlugins, OtherNamespace),
		}, []string{"plugin", "event", "result"}),
		plugins: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crivet_nri_plugins",
			Help: "NRI plugins connected now.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crivet_nri_refused_total",
			Help: "What NRI plugins asked for and crivet refused, by kind (adjustment: it would change the verified root filesystem or crivet's annotations, the create failed; eviction: crivet does not evict for plugins).",
		}, []string{"kind"}),
		names: capped{max: MaxNRIPlugins},
	}
}

func (n *nriMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{n.calls, n.plugins, n.refused}
}

// NRIPluginCall counts one call to a plugin (nri.Observer).
func (m *Metrics) NRIPluginCall(plugin, event string, failed bool) {
	if m == nil {
		return
	}
	result := "ok"
	if failed {
		result = "error"
	}
	m.nri.calls.WithLabelValues(m.nri.names.label(plugin), event, result).Inc()
}

// NRIPlugins sets how many plugins are connected (nri.Observer).
func (m *Metrics) NRIPlugins(connected int) {
	if m == nil {
		return
	}
	m.nri.plugins.Set(float64(connected))
}

// NRIRefused counts a refused plugin request (nri.Observer).
func (m *Metrics) NRIRefused(kind string) {
	if m == nil {
		return
	}
	m.nri.refused.WithLabelValues(kind).Inc()
}
