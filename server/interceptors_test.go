package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	s := &criServer{log: slog.New(slog.DiscardHandler), info: Info{Version: "test"}}
	g := (&Endpoint{s: s}).GRPCServer()
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
	s := &criServer{log: slog.New(slog.DiscardHandler), info: Info{Version: "test"}, obs: obs}
	g := (&Endpoint{s: s}).GRPCServer()
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
	_, _ = rt.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{})
	g.GracefulStop()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	want := []string{"Version OK", "PullImage Internal", "CheckpointPod Unimplemented"}
	if !slices.Equal(obs.seen, want) {
		t.Fatalf("observed %q, want %q", obs.seen, want)
	}
}

// Every request answered with an error leaves one log line with the
// method, the code, the message and the IDs it named: routine NotFound at
// Debug, request errors at Info, the runtime's own failures at Warn.
func TestFailedRequestsAreLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	guard := unaryGuard(log, nil)
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/ContainerStatus"}
	answer := func(req any, err error) map[string]any {
		t.Helper()
		buf.Reset()
		_, _ = guard(context.Background(), req, info, func(context.Context, any) (any, error) { return nil, err })
		if buf.Len() == 0 {
			return nil
		}
		var rec map[string]any
		if e := json.Unmarshal(buf.Bytes(), &rec); e != nil {
			t.Fatalf("log line %q: %v", buf.String(), e)
		}
		return rec
	}
	rec := answer(&runtimeapi.ContainerStatusRequest{ContainerId: "abc"}, status.Error(codes.NotFound, "container abc: not found"))
	if rec["level"] != "DEBUG" || rec["msg"] != "request failed" || rec["method"] != "ContainerStatus" || rec["code"] != "NotFound" || rec["container"] != "abc" || rec["error"] != "container abc: not found" {
		t.Fatalf("NotFound: %v", rec)
	}
	rec = answer(&runtimeapi.CreateContainerRequest{PodSandboxId: "p1"}, status.Error(codes.InvalidArgument, "bad"))
	if rec["level"] != "INFO" || rec["pod"] != "p1" || rec["code"] != "InvalidArgument" {
		t.Fatalf("InvalidArgument: %v", rec)
	}
	rec = answer(&runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "reg/x:1"}}, errors.New("registry down"))
	if rec["level"] != "WARN" || rec["image"] != "reg/x:1" || rec["code"] != "Unknown" {
		t.Fatalf("runtime failure: %v", rec)
	}
	if rec := answer(&runtimeapi.VersionRequest{}, nil); rec != nil {
		t.Fatalf("a request that succeeded was logged: %v", rec)
	}
}
