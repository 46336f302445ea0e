// Package server is crivet's CRI v1 gRPC layer. It decodes requests, calls
// the domain packages (image, policy, sandbox, oci) and encodes answers;
// decisions and state live in those packages, and domain errors become
// gRPC statuses here and nowhere else (errors.go).
package server

import (
	"log/slog"

	"github.com/crivet/crivet/image"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Info describes the runtime to Version and RuntimeConfig.
type Info struct {
	Version      string
	CgroupDriver runtimeapi.CgroupDriver
}

// Server implements the CRI RuntimeService and ImageService. RPCs not
// implemented yet are answered by the embedded Unimplemented servers,
// i.e. with codes.Unimplemented, never a faked success.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	images *image.Service
	info   Info
	log    *slog.Logger
}

// New returns a server over the given image service.
func New(images *image.Service, info Info, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{images: images, info: info, log: log}
}

// Register attaches both CRI services to g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}
