// Command crivet is a Kubernetes CRI runtime that verifies image
// signatures on the node. See README.md.
package main

import (
	"os"
	"runtime/debug"

	"github.com/crivet/crivet/oci/monitor"
	"go.podman.io/storage/pkg/reexec"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.2.0-dev"

func main() {
	// containers/storage unpacks layers in a re-executed child chrooted
	// into the target, so a hostile layer cannot write outside it.
	if unpackChild(os.Args[0]) {
		// The child allocates a little per file and lives for one layer;
		// collecting less often made a 6-layer, 20,000-file pull ~4%
		// faster. The limit keeps a hostile layer's headers from growing
		// it without bound.
		debug.SetGCPercent(400)
		debug.SetMemoryLimit(256 << 20)
	}
	if reexec.Init() {
		return
	}
	// The per-container monitor, started by the daemon, parses its own
	// arguments; it is not part of the operator's command line.
	if len(os.Args) > 1 && os.Args[1] == "monitor" {
		os.Exit(monitor.Main(os.Args[2:]))
	}
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// unpackChild: argv0 names one of containers/storage's archive children.
func unpackChild(argv0 string) bool {
	switch argv0 {
	case "storage-untar", "storage-applyLayer", "storage-tar":
		return true
	}
	return false
}
