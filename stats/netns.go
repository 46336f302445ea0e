package stats

import (
	"os"
	"strconv"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

// Interface is one network interface's counters.
type Interface struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// NetNSInterfaces reads the interfaces (lo excluded) of a pinned network
// namespace. No process owns a crivet pod's namespace, so cAdvisor cannot
// see it: this is the only source of pod network counters.
func NetNSInterfaces(netns string) []Interface {
	if netns == "" {
		return nil
	}
	var data []byte
	if err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		var err error
		// The reading thread is the one switched into the namespace.
		data, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	}); err != nil {
		return nil
	}
	return parseNetDev(string(data))
}

// parseNetDev parses /proc/net/dev (two header lines, then
// "name: rx×8 tx×8").
func parseNetDev(data string) []Interface {
	lines := strings.Split(data, "\n")
	if len(lines) < 2 {
		return nil
	}
	var out []Interface
	for _, line := range lines[2:] {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 12 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		out = append(out, Interface{Name: name, RxBytes: n(0), RxPackets: n(1), RxErrors: n(2), RxDropped: n(3),
			TxBytes: n(8), TxPackets: n(9), TxErrors: n(10), TxDropped: n(11)})
	}
	return out
}
