package metrics

import (
	"context"
	"time"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	"github.com/prometheus/client_golang/prometheus"
)

// Inventory names the owners asked, at each scrape, how many images, pods
// and containers the node holds. Each is read only; a nil one leaves its
// family out.
type Inventory struct {
	Images interface{ Count() (int, error) }
	Pods   interface {
		List() []*sandbox.Pod
		Containers(podID string) []*sandbox.Container
	}
	Runtime interface {
		Status(ctx context.Context, id string) (runtime.Status, error)
	}
}

// statusTimeout bounds one scrape's container status reads: the runtime
// answers most from its cache, the rest with one runc call each.
const statusTimeout = 10 * time.Second

var (
	imagesDesc     = prometheus.NewDesc("crivet_images", "Images in the node's store.", nil, nil)
	podsDesc       = prometheus.NewDesc("crivet_pods", "Pod sandboxes, by state (ready, notready).", []string{"state"}, nil)
	containersDesc = prometheus.NewDesc("crivet_containers", "Containers, by state (created, running, exited, unknown).", []string{"state"}, nil)
)

// Watch registers the inventory; call it once.
func (m *Metrics) Watch(inv Inventory) {
	if m == nil {
		return
	}
	m.reg.MustRegister(inventoryCollector{inv})
}

type inventoryCollector struct{ inv Inventory }

func (c inventoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- imagesDesc
	ch <- podsDesc
	ch <- containersDesc
}

func (c inventoryCollector) Collect(ch chan<- prometheus.Metric) {
	if c.inv.Images != nil {
		if n, err := c.inv.Images.Count(); err != nil {
			ch <- prometheus.NewInvalidMetric(imagesDesc, err)
		} else {
			ch <- prometheus.MustNewConstMetric(imagesDesc, prometheus.GaugeValue, float64(n))
		}
	}
	if c.inv.Pods == nil {
		return
	}
	pods := map[sandbox.State]int{sandbox.Ready: 0, sandbox.NotReady: 0}
	for _, p := range c.inv.Pods.List() {
		pods[p.State]++
	}
	for state, n := range pods {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(n), string(state))
	}
	if c.inv.Runtime == nil {
		return
	}
	ctrs := map[runtime.State]int{runtime.StateCreated: 0, runtime.StateRunning: 0, runtime.StateExited: 0, runtime.StateUnknown: 0}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	for _, ctr := range c.inv.Pods.Containers("") {
		st, err := c.inv.Runtime.Status(ctx, ctr.ID)
		if err != nil {
			// As ContainerStatus answers: the process state is gone.
			st.State = runtime.StateUnknown
		}
		ctrs[st.State]++
	}
	for state, n := range ctrs {
		ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, float64(n), string(state))
	}
}
