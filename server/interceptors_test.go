package server

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A request that panics a handler is answered Internal and the daemon keeps
// serving: here a real gRPC server on a unix socket, with a server that
// has no image service, so PullImage dereferences nil.
func TestPanicIsInternalAndServerKeepsServing(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler), info: Info{Version: "test"}}
	g := grpc.NewServer(s.ServerOptions()...)
	s.Register(g)
	sock := filepath.Join(t.TempDir(), "crivet.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	images := runtimeapi.NewImageServiceClient(conn)
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		_, err := images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "reg/x:1"}})
		if status.Code(err) != codes.Internal {
			t.Fatalf("panicking PullImage: %v, want Internal", err)
		}
		// A streaming RPC panics the same way and is answered the same way.
		stream, err := images.StreamImages(ctx, &runtimeapi.StreamImagesRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.Internal {
			t.Fatalf("panicking StreamImages: %v, want Internal", err)
		}
		if v, err := rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil || v.RuntimeName != runtimeName {
			t.Fatalf("server stopped serving after a panic: %v %v", v, err)
		}
	}
}
