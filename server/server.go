// Package server is crivet's CRI v1 gRPC layer. It decodes requests, calls
// the domain packages (image, sandbox, lifecycle, oci/runtime) through the
// small interfaces in deps.go, and encodes answers; decisions and state
// live in those packages, and domain errors become gRPC statuses in one
// place, the interceptor (interceptors.go, errors.go).
package server

import (
	"log/slog"
	"net/http"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/lifecycle"
	"github.com/crivet/crivet/oci/cdi"
	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
)

// Info describes the runtime to Version and RuntimeConfig.
type Info struct {
	Version      string
	CgroupDriver cgroup.Driver
	// Config returns the daemon's configuration in force (it changes on
	// reload), shown by crictl info; may be nil.
	Config func() any
	// Policies reports the policy files' state for crictl info (may be nil).
	Policies interface{ Files() []policy.FileState }
	// Handlers lists the runtime handlers with what each can do (Status);
	// nil reports the default handler with no features.
	Handlers func() []runtime.HandlerInfo
	// Plugins lists the connected NRI plugins for crictl info; nil when
	// NRI is off.
	Plugins func() any
	// UserNamespaces: crivet itself runs pods with hostUsers: false.
	// Status advertises user namespaces on a handler only when this and
	// the handler's id-mapped mounts are both true.
	UserNamespaces bool
	// CDI reports the CDI spec directories and devices for crictl info
	// (nil: not reported).
	CDI func() cdi.State
}

// Options wires the server to the domain packages.
type Options struct {
	Info      Info
	Images    *image.Service
	Pods      *sandbox.Manager
	Lifecycle *lifecycle.Manager
	Runtime   *runtime.Runtime
	// StreamAddress is where the exec/attach/port-forward server listens ("127.0.0.1:0").
	StreamAddress string
	Logger        *slog.Logger
	// Observer is told of every CRI request when it ends (metrics); nil
	// observes nothing.
	Observer Observer
	// Space refuses calls that consume space while the root file system is
	// full; nil refuses nothing.
	Space Space
}

// criServer implements the CRI RuntimeService and ImageService. RPCs not
// implemented are answered by the embedded Unimplemented servers, i.e.
// with codes.Unimplemented, never a faked success.
type criServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	images  images
	pods    pods
	lc      containers
	rt      processes
	streams streaming.Server
	httpSrv *http.Server
	info    Info
	log     *slog.Logger
	obs     Observer
	space   Space
}

// Endpoint is crivet's CRI endpoint: the CRI services, which it serves
// only through GRPCServer, and the streaming server of exec, attach and
// port-forward.
type Endpoint struct{ s *criServer }

// New returns the endpoint over the given services and starts its
// streaming server.
func New(o Options) (*Endpoint, error) {
	s, err := newCRIServer(o)
	if err != nil {
		return nil, err
	}
	return &Endpoint{s: s}, nil
}

func newCRIServer(o Options) (*criServer, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &criServer{info: o.Info, log: o.Logger, obs: o.Observer, space: o.Space}
	// A nil service stays a nil interface (a server without a runtime
	// answers the image service only).
	if o.Images != nil {
		s.images = o.Images
	}
	if o.Pods != nil {
		s.pods = o.Pods
	}
	if o.Lifecycle != nil {
		s.lc = o.Lifecycle
	}
	if o.Runtime != nil {
		s.rt = o.Runtime
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

// GRPCServer is the gRPC server that serves both CRI services. It is the
// only way to serve them (the services' type is not exported): every
// request then goes through the interceptors (panic guard, one
// error-to-status mapping, the failed request's log line, metrics),
// which a caller could otherwise forget. opts add transport options
// (message sizes) after them.
func (e *Endpoint) GRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	g := grpc.NewServer(append(e.s.serverOptions(), opts...)...)
	runtimeapi.RegisterRuntimeServiceServer(g, e.s)
	runtimeapi.RegisterImageServiceServer(g, e.s)
	return g
}

// Close stops the streaming server.
func (e *Endpoint) Close() error { return e.s.close() }

func (s *criServer) close() error {
	if s.httpSrv != nil {
		return s.httpSrv.Close()
	}
	return nil
}
