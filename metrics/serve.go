package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// ListenAddress completes a metrics_address: a missing host (":9090")
// means loopback, since the metrics name namespaces and the node's
// workload. loopback reports whether the address stays on this host.
func ListenAddress(addr string) (_ string, loopback bool, _ error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false, fmt.Errorf("metrics address %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if host == "localhost" {
		return net.JoinHostPort(host, port), true, nil
	}
	ip := net.ParseIP(host)
	return net.JoinHostPort(host, port), ip != nil && ip.IsLoopback(), nil
}

// Server is the running metrics endpoint.
type Server struct {
	srv *http.Server
	lis net.Listener
}

// Serve listens on addr (completed by ListenAddress) and serves /metrics
// until Close.
func (m *Metrics) Serve(addr string, log *slog.Logger) (*Server, error) {
	addr, _, err := ListenAddress(addr)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	s := &Server{lis: lis, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "error", err)
		}
	}()
	return s, nil
}

// Addr is the address the endpoint listens on (its port when ":0" was asked).
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Close stops the endpoint, letting a scrape in progress finish.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
