package server

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCheckpointContainerNeedsALocation(t *testing.T) {
	f := createFixture(t)
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.CheckpointContainerResponse, error) {
		return f.s.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: "c1"})
	})
	wantCode(t, err, codes.InvalidArgument)
	wantCalls(t, "lifecycle", f.lc.got())
}
