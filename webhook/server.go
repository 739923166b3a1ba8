// Package webhook is the operator's embedded HTTP server: the upload API that
// services call to create sessions, send parts and finalize.
package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
)

// Server is the upload API server; it runs on every replica, leader or not.
type Server struct {
	Addr    string
	Handler http.Handler
	Log     logr.Logger
	// ShutdownGrace bounds how long in-flight requests may finish on stop.
	ShutdownGrace time.Duration
	// ReadHeaderTimeout: a client must send its headers within it (default 10s).
	ReadHeaderTimeout time.Duration

	ready chan string
}

// Start serves until ctx ends, then drains (manager.Runnable).
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return err
	}
	rht := s.ReadHeaderTimeout
	if rht == 0 {
		rht = 10 * time.Second
	}
	srv := &http.Server{
		Handler: s.Handler,
		// Slowloris defence: headers must arrive promptly and idle keep-alive
		// connections are reaped; bodies are bounded per request by the part
		// timeout instead of a global ReadTimeout, which would cut large parts.
		ReadHeaderTimeout: rht,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.Log.Info("upload API listening", "addr", ln.Addr().String())
	if s.ready != nil {
		s.ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	grace := s.ShutdownGrace
	if grace == 0 {
		grace = 30 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// NeedLeaderElection: every replica serves the upload API.
func (s *Server) NeedLeaderElection() bool { return false }
