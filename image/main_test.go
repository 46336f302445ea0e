package image

import (
	"os"
	"testing"

	"go.podman.io/storage/pkg/reexec"
)

// The store unpacks layers in a re-executed copy of the test binary.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}
