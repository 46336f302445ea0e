package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/crivet/crivet/oci/runtime"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers of 200 containers in 4 pods, as make bench lists them:
// the handler alone, and with the response marshalled as gRPC sends it.
func BenchmarkListContainers200(b *testing.B) {
	f := newFixture(b)
	for p := range 4 {
		f.addPod(fmt.Sprintf("pod%d", p), "default", nil)
	}
	for i := range 200 {
		c := f.addContainer(fmt.Sprintf("%064x", i), fmt.Sprintf("pod%d", i%4), runtime.StateRunning, map[string]string{"io.crivet.bench": "1"})
		c.Config.Image.UserSpecifiedImage = c.Config.Image.Image
	}
	ctx := context.Background()
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("handler+marshal", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		for b.Loop() {
			r, _ := f.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			out, err := proto.Marshal(r)
			if err != nil {
				b.Fatal(err)
			}
			size = len(out)
		}
		b.ReportMetric(float64(size), "bytes/resp")
	})
}
