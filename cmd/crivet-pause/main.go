// Command crivet-pause owns a pod's shared PID namespace: as its PID 1 it
// reaps orphaned processes of the pod's containers and exits on SIGINT or
// SIGTERM. It is built statically (CGO_ENABLED=0) so that it runs from a
// root filesystem holding nothing but itself: a node needs no pause image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
