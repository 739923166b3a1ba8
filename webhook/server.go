// Package webhook is the operator's embedded HTTP server: the upload API that
// services call to create sessions, send parts and finalize.
package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/mocs-dev/upload-operator/internal/metrics"
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
	// MaxIdleConns bounds keep-alive connections waiting for a request
	// (default 512); past it the longest idle is closed (idleConns).
	MaxIdleConns int
	// TLSCertFile and TLSKeyFile, when set, make the server HTTPS. The files
	// are watched: a renewed certificate (cert-manager rotating a Secret) is
	// served from the next handshake on, without a restart.
	TLSCertFile, TLSKeyFile string
	// CertReloadInterval is how often the files are re-read besides
	// file-system events (default 10s).
	CertReloadInterval time.Duration
	// GetCertificate, when set, makes the server HTTPS with certificates the
	// operator signs itself (servingcert); it takes precedence over the files.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)

	keepAlive *idleConns

	// admitted is called with each request the server admitted, before its
	// handler runs (tests hold a request there to race it with a shutdown).
	admitted func()

	mu       sync.Mutex
	draining bool
	inflight int
	idle     chan struct{} // closed when draining and nothing is in flight
}

// Draining reports whether the server is shutting down (a readiness check).
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// admit decides, in one step with the drain, whether a request is served: a
// request either counts as in flight before draining starts (and the drain
// waits for it) or is refused.
func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.inflight++
	return true
}

func (s *Server) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if s.draining && s.inflight == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// startDraining refuses every later request and returns a channel closed once
// the requests in flight are done.
func (s *Server) startDraining() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	idle := make(chan struct{})
	if s.inflight == 0 {
		close(idle)
	} else {
		s.idle = idle
	}
	return idle
}

// drain answers new requests 503 SHUTTING_DOWN while the server drains and
// tracks the requests in flight, so none is cut off mid-part.
func (s *Server) drain(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.admit() {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusServiceUnavailable, "SHUTTING_DOWN", map[string]any{"retryable": true})
			return
		}
		metrics.RequestsInFlight.Inc()
		defer func() { metrics.RequestsInFlight.Dec(); s.done() }()
		if s.admitted != nil {
			s.admitted()
		}
		next.ServeHTTP(w, r)
	})
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
	maxIdle := s.MaxIdleConns
	if maxIdle <= 0 {
		maxIdle = 512
	}
	s.keepAlive = newIdleConns(maxIdle)
	srv := &http.Server{
		ConnState: s.keepAlive.track,
		Handler:   s.drain(s.Handler),
		// Slowloris defence: headers must arrive promptly and idle keep-alive
		// connections are reaped; bodies are bounded per request by the part
		// timeout instead of a global ReadTimeout, which would cut large parts.
		ReadHeaderTimeout: rht,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	serve := func() error { return srv.Serve(ln) }
	if s.GetCertificate != nil {
		srv.TLSConfig = &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS12}
		serve = func() error { return srv.ServeTLS(ln, "", "") }
	} else if s.TLSCertFile != "" {
		watcher, err := certwatcher.New(s.TLSCertFile, s.TLSKeyFile)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("TLS certificate: %w", err)
		}
		interval := s.CertReloadInterval
		if interval <= 0 {
			interval = 10 * time.Second
		}
		watcher.WithWatchInterval(interval)
		go func() {
			if err := watcher.Start(ctx); err != nil {
				s.Log.Error(err, "TLS certificate watcher stopped")
			}
		}()
		srv.TLSConfig = &tls.Config{GetCertificate: watcher.GetCertificate, MinVersion: tls.VersionTLS12}
		serve = func() error { return srv.ServeTLS(ln, "", "") }
	}
	s.Log.Info("upload API listening", "addr", ln.Addr().String(), "tls", srv.TLSConfig != nil)
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Graceful shutdown: keep listening and answer new requests 503
	// SHUTTING_DOWN (clients retry on another replica) while the parts in
	// flight finish, up to the grace period; then close.
	grace := s.ShutdownGrace
	if grace == 0 {
		grace = 30 * time.Second
	}
	idle := s.startDraining()
	s.Log.Info("draining: new requests get 503 SHUTTING_DOWN; waiting for requests in flight", "grace", grace.String())
	select {
	case <-idle:
	case <-time.After(grace):
		s.Log.Info("grace period over with requests still in flight")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) { //nolint:contextcheck // shutdown outlives the cancelled serving context
		return err
	}
	s.Log.Info("upload API stopped")
	return nil
}

// NeedLeaderElection: every replica serves the upload API.
func (s *Server) NeedLeaderElection() bool { return false }
