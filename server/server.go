// Package server is crivet's CRI v1 gRPC layer. It decodes requests, calls
// the domain packages (image, policy, sandbox, oci) and encodes answers;
// decisions and state live in those packages, and domain errors become
// gRPC statuses here and nowhere else (errors.go).
package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
)

// Info describes the runtime to Version and RuntimeConfig.
type Info struct {
	Version      string
	CgroupDriver runtimeapi.CgroupDriver
}

// Options wires the server to the domain packages.
type Options struct {
	Info    Info
	Images  *image.Service
	Pods    *sandbox.Manager
	Runtime *runtime.Runtime
	// RunRoot holds container bundles (<RunRoot>/bundles/<id>).
	RunRoot string
	// PauseBinary is the static infra program for pods sharing a PID namespace.
	PauseBinary string
	// SeccompProfileRoot resolves relative Localhost seccomp profiles.
	SeccompProfileRoot string
	// StreamAddress is where the exec/attach/port-forward server listens ("127.0.0.1:0").
	StreamAddress string
	Logger        *slog.Logger
}

// Server implements the CRI RuntimeService and ImageService. RPCs not
// implemented are answered by the embedded Unimplemented servers, i.e.
// with codes.Unimplemented, never a faked success.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	images  *image.Service
	pods    *sandbox.Manager
	rt      *runtime.Runtime
	streams streaming.Server
	httpSrv *http.Server
	events  *eventBus
	opts    Options
	info    Info
	log     *slog.Logger
}

// New returns a server over the given services and starts its streaming
// endpoint.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{images: o.Images, pods: o.Pods, rt: o.Runtime, opts: o, info: o.Info, log: o.Logger, events: newEventBus()}
	if o.Runtime != nil && o.Pods != nil {
		s.recoverOrphans(context.Background())
		// Evented PLEG wants the pod's whole status with each event.
		s.events.status = func(podID string) (*runtimeapi.PodSandboxStatus, []*runtimeapi.ContainerStatus) {
			resp, err := s.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
			if err != nil {
				return nil, nil
			}
			return resp.Status, resp.ContainersStatuses
		}
	}
	if o.Runtime != nil {
		st, hs, err := newStreamServer(s, o.StreamAddress)
		if err != nil {
			return nil, err
		}
		s.streams, s.httpSrv = st, hs
	}
	return s, nil
}

// Register attaches both CRI services to g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}

// Close stops the streaming endpoint.
func (s *Server) Close() error {
	if s.httpSrv != nil {
		return s.httpSrv.Close()
	}
	return nil
}

func nowNano() int64 { return time.Now().UnixNano() }
