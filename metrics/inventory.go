package metrics

import (
	"context"
	"fmt"
	"sync"
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
	// States is the one container state (lifecycle.Manager's
	// ContainerState), as ContainerStatus reports it.
	States interface {
		ContainerState(ctx context.Context, id string) (runtime.Status, error)
	}
	// Events counts the container events slow subscribers lost
	// (lifecycle.Manager).
	Events interface{ DroppedEvents() uint64 }
}

// statusTimeout bounds one scrape's container status reads: the runtime
// answers most from its cache, the rest with one runc call each.
const statusTimeout = 10 * time.Second

// unsettledTTL is how long a scrape reuses a container's status that the
// runtime could not settle: unknown, or an error. The runtime caches the
// other states (created and running until an exit is recorded, exited for
// good) and answers them without runc; these it asks runc about at every
// call, and a container runc calls stopped but whose exit is not recorded
// costs a wait of up to two seconds besides. A container in such a state
// rarely leaves it soon (it is removed, or its exit is recorded late), so
// a gauge that lags by this much is a fair price for not running runc for
// each of them at every scrape.
const unsettledTTL = 30 * time.Second

var (
	imagesDesc     = prometheus.NewDesc("crivet_images", "Images in the node's store.", nil, nil)
	podsDesc       = prometheus.NewDesc("crivet_pods", "Pod sandboxes, by state (ready, notready).", []string{"state"}, nil)
	droppedDesc    = prometheus.NewDesc("crivet_container_events_dropped_total", "Container events (GetContainerEvents) a subscriber too slow to keep up did not get; kubelet then relists.", nil, nil)
	containersDesc = prometheus.NewDesc("crivet_containers", fmt.Sprintf("Containers, by state (created, running, exited, unknown); a container found unknown is read again after %s, not at each scrape.", unsettledTTL), []string{"state"}, nil)
)

// Watch registers the inventory; call it once.
func (m *Metrics) Watch(inv Inventory) {
	if m == nil {
		return
	}
	m.reg.MustRegister(newInventoryCollector(inv, time.Now))
}

type inventoryCollector struct {
	inv Inventory
	now func() time.Time

	// mu serialises scrapes, so concurrent ones share the remembered
	// answers rather than each running runc.
	mu        sync.Mutex
	unsettled map[string]unsettledStatus
}

// unsettledStatus is a remembered unknown or failed status.
type unsettledStatus struct {
	state runtime.State
	at    time.Time
}

func newInventoryCollector(inv Inventory, now func() time.Time) *inventoryCollector {
	return &inventoryCollector{inv: inv, now: now, unsettled: map[string]unsettledStatus{}}
}

func (c *inventoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- imagesDesc
	ch <- podsDesc
	ch <- containersDesc
	ch <- droppedDesc
}

func (c *inventoryCollector) Collect(ch chan<- prometheus.Metric) {
	if c.inv.Events != nil {
		ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.inv.Events.DroppedEvents()))
	}
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
	if c.inv.States == nil {
		return
	}
	ctrs := c.containerStates()
	for state, n := range ctrs {
		ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, float64(n), string(state))
	}
}

// containerStates counts the containers by state, asking the runtime
// about each except those whose unsettled answer is still fresh.
func (c *inventoryCollector) containerStates() map[runtime.State]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctrs := map[runtime.State]int{runtime.StateCreated: 0, runtime.StateRunning: 0, runtime.StateExited: 0, runtime.StateUnknown: 0}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	now := c.now()
	kept := make(map[string]unsettledStatus, len(c.unsettled))
	for _, ctr := range c.inv.Pods.Containers("") {
		if u, ok := c.unsettled[ctr.ID]; ok && now.Sub(u.at) < unsettledTTL {
			kept[ctr.ID] = u
			ctrs[u.state]++
			continue
		}
		st, err := c.inv.States.ContainerState(ctx, ctr.ID)
		if err != nil {
			// The runtime could not answer now (a record whose process
			// state is gone is already unknown, as ContainerStatus says).
			st.State = runtime.StateUnknown
		}
		switch st.State {
		case runtime.StateCreated, runtime.StateRunning, runtime.StateExited:
		default:
			// A scrape out of time says nothing about the container:
			// the next one asks again.
			if ctx.Err() == nil {
				kept[ctr.ID] = unsettledStatus{state: st.State, at: now}
			}
		}
		ctrs[st.State]++
	}
	// Containers no longer listed are forgotten.
	c.unsettled = kept
	return ctrs
}
