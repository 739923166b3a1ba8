package webhook

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

// A request the server admitted just as draining starts is waited for, even
// when it has not reached its handler yet and takes longer than the server's
// final shutdown timeout; a request after that is refused with 503
// SHUTTING_DOWN. Admission and draining are one step: no request can slip in
// between the check and the count.
func TestDrainWaitsForEveryAdmittedRequest(t *testing.T) {
	addr, err := localenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) {})
	handlerDone := make(chan time.Time, 1)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2500 * time.Millisecond) // longer than the 2 s the final Shutdown allows
		_, _ = io.WriteString(w, "all of it")
		handlerDone <- time.Now()
	})
	admitted, proceed := make(chan struct{}), make(chan struct{})
	var holding atomic.Bool // set for the slow request only
	s := &Server{Addr: addr, Handler: mux, Log: logr.Discard(), ShutdownGrace: 10 * time.Second}
	s.admitted = func() {
		if holding.CompareAndSwap(true, false) {
			close(admitted)
			<-proceed
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan time.Time, 1)
	go func() { _ = s.Start(ctx); stopped <- time.Now() }()
	base := "http://" + addr
	for {
		if resp, err := http.Get(base + "/healthz-unused"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	holding.Store(true)
	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{resp.StatusCode, string(b), err}
	}()
	<-admitted
	stop()
	for !s.Draining() {
		time.Sleep(10 * time.Millisecond)
	}
	late, err := http.Get(base + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	late.Body.Close()
	if late.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("request after draining began: %d, want 503", late.StatusCode)
	}
	close(proceed)
	r := <-slow
	if r.err != nil || r.status != http.StatusOK || r.body != "all of it" {
		t.Fatalf("admitted request: %d %q %v; want it served in full", r.status, r.body, r.err)
	}
	done, end := <-handlerDone, <-stopped
	if end.Before(done) {
		t.Fatalf("the server stopped %s before its admitted request finished", done.Sub(end))
	}
}

// A client that opens a connection per request and leaves each open holds
// at most MaxIdleConns of the server's connections: the longest idle are
// closed, the most recent kept.
func TestIdleConnectionsAreBounded(t *testing.T) {
	addr, err := localenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) {})
	const limit, opened = 4, 12
	s := &Server{Addr: addr, Handler: mux, Log: logr.Discard(), ShutdownGrace: time.Second, MaxIdleConns: limit}
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = s.Start(ctx); close(stopped) }()
	defer func() { stop(); <-stopped }()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := range opened {
		var c net.Conn
		for {
			if c, err = net.Dial("tcp", addr); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		resp.Body.Close()
		// The server marks a connection idle after the client may already
		// have read its response: wait for it, so "oldest" means dial order.
		wantIdle, wantClosed := min(i+1, limit), max(0, i+1-limit)
		deadline := time.Now().Add(5 * time.Second)
		for {
			idle, closed := s.keepAlive.counts()
			if idle == wantIdle && closed == wantClosed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after connection %d: %d idle, %d closed; want %d, %d", i, idle, closed, wantIdle, wantClosed)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// The server closed the oldest: reading from them ends at once.
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		closed := errors.Is(err, io.EOF)
		if want := i < opened-limit; closed != want {
			t.Errorf("connection %d (of %d, oldest first): closed=%v (%v), want %v", i, opened, closed, err, want)
		}
	}
}
