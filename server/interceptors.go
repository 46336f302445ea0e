package server

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	rdebug "runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// serverOptions are the gRPC options every crivet CRI endpoint needs:
// panics become errors, and every handler's error gets its CRI shape.
func (s *criServer) serverOptions() []grpc.ServerOption {
	unary := []grpc.UnaryServerInterceptor{unaryGuard(s.log, s.obs)}
	if s.space != nil {
		// Inside unaryGuard: its refusals are mapped and observed too.
		unary = append(unary, spaceGuard(s.space))
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(streamGuard(s.log, s.obs)),
	}
}

// unaryGuard keeps the daemon serving whatever one request does. A node
// runtime that exits on a panic takes every pod's management with it, and
// kubelet's retries of the same request would make that a crash loop, so a
// panic is answered as Internal, logged with the method and stack, and the
// process goes on. It is also the single place where domain errors become
// gRPC statuses (toStatus is idempotent for handlers that still map),
// and so where each request is observed with the code it was answered.
func unaryGuard(log *slog.Logger, obs Observer) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				resp, err = nil, panicked(log, info.FullMethod, r)
			} else if err != nil {
				logFailed(log, info.FullMethod, req, err, start)
			}
			observe(obs, info.FullMethod, err, start)
		}()
		resp, err = handler(ctx, req)
		return resp, toStatus(err)
	}
}

// logFailed writes one line for a request answered with an error: the
// method, the code and message kubelet got, how long it took, and the
// IDs the request named, so an operator can follow a failing pod in the
// daemon's log without turning on debug logging. Answers kubelet gets
// routinely (NotFound for a container it is still polling, a client that
// went away) are Debug; request errors Info; the runtime's own failures
// Warn.
func logFailed(log *slog.Logger, method string, req any, err error, start time.Time) {
	st := status.Convert(err)
	level := slog.LevelWarn
	switch st.Code() {
	case codes.NotFound, codes.Canceled:
		level = slog.LevelDebug
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.Unimplemented, codes.OutOfRange:
		level = slog.LevelInfo
	}
	if !log.Enabled(context.Background(), level) {
		return
	}
	attrs := []any{"method", path.Base(method), "code", st.Code().String(), "error", st.Message(), "duration", time.Since(start)}
	if r, ok := req.(interface{ GetPodSandboxId() string }); ok && r.GetPodSandboxId() != "" {
		attrs = append(attrs, "pod", r.GetPodSandboxId())
	}
	if r, ok := req.(interface{ GetContainerId() string }); ok && r.GetContainerId() != "" {
		attrs = append(attrs, "container", r.GetContainerId())
	}
	if r, ok := req.(interface {
		GetImage() *runtimeapi.ImageSpec
	}); ok && r.GetImage().GetImage() != "" {
		attrs = append(attrs, "image", r.GetImage().GetImage())
	}
	log.Log(context.Background(), level, "request failed", attrs...)
}

func streamGuard(log *slog.Logger, obs Observer) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				err = panicked(log, info.FullMethod, r)
			} else if err != nil {
				logFailed(log, info.FullMethod, nil, err, start)
			}
			observe(obs, info.FullMethod, err, start)
		}()
		return toStatus(handler(srv, ss))
	}
}

// observe reports a finished request by its bare method name: the gRPC
// server routes only registered methods through interceptors, so the
// names are CRI's, a bounded set.
func observe(obs Observer, fullMethod string, err error, start time.Time) {
	if obs == nil {
		return
	}
	obs.CRIRequest(path.Base(fullMethod), status.Code(err), time.Since(start))
}

func panicked(log *slog.Logger, method string, r any) error {
	log.Error("request panicked; answered Internal, daemon continues", "method", method, "panic", fmt.Sprint(r), "stack", string(rdebug.Stack()))
	return status.Errorf(codes.Internal, "%s: internal error: %v", method, r)
}
