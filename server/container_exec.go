package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/crivet/crivet/lifecycle"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

func (s *criServer) runningContainer(ctx context.Context, id string) (string, error) {
	c, err := s.pods.GetContainer(id)
	if err != nil {
		return "", err
	}
	if err := lifecycle.Running(s.rt.Status(ctx, c.ID)); err != nil {
		return "", fmt.Errorf("container %s: %w", c.ID, err)
	}
	return c.ID, nil
}

func (s *criServer) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	id, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if len(req.GetCmd()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "exec: empty command")
	}
	stdout, stderr, code, err := s.rt.ExecSync(ctx, id, req.GetCmd(), time.Duration(req.GetTimeout())*time.Second)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: code}, nil
}

func (s *criServer) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	id, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if len(req.GetCmd()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "exec: empty command")
	}
	req.ContainerId = id
	return s.streams.GetExec(req)
}

func (s *criServer) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	id, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	req.ContainerId = id
	return s.streams.GetAttach(req)
}

func (s *criServer) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	req.PodSandboxId = pod.ID
	return s.streams.GetPortForward(req)
}

// streamRuntime is what the cri-streaming server calls back.
type streamRuntime struct{ s *criServer }

func (r streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return r.s.rt.Exec(ctx, id, cmd, in, out, errw, tty, resize)
}

func (r streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return r.s.rt.Attach(ctx, id, in, out, errw, tty, resize)
}

// PortForward connects the stream to localhost:port inside the pod's
// network namespace (the node's own for host-network pods).
func (r streamRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	pod, err := r.s.pods.Get(podID)
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var conn net.Conn
	dial := func(ns.NetNS) error {
		var err error
		conn, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp4", addr)
		return err
	}
	switch {
	case pod.HostNetwork():
		err = dial(nil)
	case pod.NetNS == "":
		return fmt.Errorf("port forward: pod %s has no network (stopped)", podID)
	default:
		// The socket keeps the namespace it was created in; only the dial
		// needs to happen on a thread inside the pod's network.
		err = ns.WithNetNSPath(pod.NetNS, dial)
	}
	if err != nil {
		return fmt.Errorf("port forward to %s in pod %s: %w", addr, podID, err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); conn.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// newStreamServer serves exec, attach and port-forward on a loopback
// address; kubelet proxies clients to the URLs the RPCs return.
func newStreamServer(s *criServer, addr string) (streaming.Server, *http.Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("stream server: %w", err)
	}
	cfg := streaming.DefaultConfig
	cfg.Addr = lis.Addr().String()
	cfg.BaseURL = &url.URL{Scheme: "http", Host: lis.Addr().String()}
	srv, err := streaming.NewServer(cfg, streamRuntime{s})
	if err != nil {
		lis.Close()
		return nil, nil, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		if err := hs.Serve(lis); err != nil && err != http.ErrServerClosed {
			s.log.Error("stream server stopped", "error", err)
		}
	}()
	return srv, hs, nil
}
