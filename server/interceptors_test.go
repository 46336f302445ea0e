package server

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

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

type observed struct {
	mu   sync.Mutex
	seen []string
}

func (o *observed) CRIRequest(method string, code codes.Code, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if took < 0 {
		method += " negative duration"
	}
	o.seen = append(o.seen, method+" "+code.String())
}

// Every request, unary or stream, answered or panicking, is observed once
// when it ends, by its bare method name and the code the client got.
func TestRequestsAreObservedWithMethodAndCode(t *testing.T) {
	obs := &observed{}
	s := &Server{log: slog.New(slog.DiscardHandler), info: Info{Version: "test"}, obs: obs}
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
	ctx := context.Background()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	if _, err := rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	// No image service: PullImage panics and is answered Internal.
	_, _ = runtimeapi.NewImageServiceClient(conn).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "reg/x:1"}})
	// Not implemented by crivet: Unimplemented.
	_, _ = rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{})
	g.GracefulStop()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	want := []string{"Version OK", "PullImage Internal", "CheckpointContainer Unimplemented"}
	if !slices.Equal(obs.seen, want) {
		t.Fatalf("observed %q, want %q", obs.seen, want)
	}
}
