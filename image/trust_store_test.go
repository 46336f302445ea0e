package image

import (
	"testing"

	"github.com/crivet/crivet/image/trust"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	ociarchive "go.podman.io/image/v5/oci/archive"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"
)

// A recorded import is verified under the transport it was imported
// with: trust names transports by the library's names, which are this
// package's formats.
func TestImportRefTransportIsTheFormat(t *testing.T) {
	for format, want := range map[string]types.ImageTransport{
		FormatDockerArchive: dockerarchive.Transport,
		FormatOCIArchive:    ociarchive.Transport,
		FormatOCILayout:     ocilayout.Transport,
	} {
		if got := trust.NewImportRef(&ImportSource{Transport: format}).Transport(); got != want {
			t.Errorf("format %q: transport %v, want %v", format, got.Name(), want.Name())
		}
	}
	if got := trust.NewImportRef(&ImportSource{Transport: "nope"}).Transport().Name(); got != "nope" {
		t.Errorf("unknown transport named %q, want nope", got)
	}
}
