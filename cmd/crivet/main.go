// Command crivet is a Kubernetes CRI runtime that verifies image
// signatures on the node. See README.md.
package main

import (
	"os"

	"github.com/crivet/crivet/oci/monitor"
	"go.podman.io/storage/pkg/reexec"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.2.0-dev"

func main() {
	// containers/storage unpacks layers in a re-executed child chrooted
	// into the target, so a hostile layer cannot write outside it.
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
