// Command crivet-monitor is the per-container monitor (package monitor) as
// a binary of its own. `crivet monitor` does the same job, but re-executing
// crivet pays for the initialisation of every package crivet links (image
// and storage libraries, gRPC): tens of milliseconds per container created.
// This binary links only the monitor. Usage: crivet-monitor <state-dir>.
package main

import (
	"os"

	"github.com/crivet/crivet/oci/monitor"
)

func main() {
	os.Exit(monitor.Main(os.Args[1:]))
}
