// Package faultproxy puts a real TCP proxy (toxiproxy, in-process) between
// the operator and a server (S3, PostgreSQL, Redis) so tests and `make
// evidence` can inject real network faults: refuse connections, reset them,
// stall them, slow them down. Nothing here edits a return value.
package faultproxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Server holds the proxies.
type Server struct {
	api *toxiproxy.ApiServer
}

// New starts an in-process toxiproxy with its logging silenced: the server's
// own logger, and the process-wide zerolog level its toxics log through (the
// bandwidth toxic traces every interrupted write, hundreds of lines per fault).
func New() *Server {
	zerolog.SetGlobalLevel(zerolog.Disabled)
	m := toxiproxy.NewMetricsContainer(prometheus.NewRegistry())
	return &Server{api: toxiproxy.NewServer(m, zerolog.Nop())}
}

// Proxy is one proxied upstream.
type Proxy struct {
	p    *toxiproxy.Proxy
	Addr string // host:port to dial instead of the upstream
	key  string
}

// Add proxies upstream (host:port) on a free loopback port.
func (s *Server) Add(name, upstream string) (*Proxy, error) {
	p := toxiproxy.NewProxy(s.api, name, "127.0.0.1:0", upstream)
	if err := s.api.Collection.Add(p, true); err != nil {
		return nil, fmt.Errorf("proxy %s: %w", name, err)
	}
	return &Proxy{p: p, Addr: p.Listen, key: fmt.Sprintf("%s/%d", name, proxySeq.Add(1))}, nil
}

// Close stops every proxy.
func (s *Server) Close() { _ = s.api.Collection.Clear() }

// Disable stops listening and drops every connection: the server is down
// (connection refused).
func (p *Proxy) Disable() { p.p.Stop() }

// Enable listens again on the same address.
func (p *Proxy) Enable() error { return p.p.Start() }

// Cut drops every open connection and keeps accepting new ones, so the next
// requests start on fresh connections (and are counted as attempts).
func (p *Proxy) Cut() error {
	p.p.Stop()
	return p.p.Start()
}

// AddToxic adds a toxiproxy toxic, e.g. ("latency", "downstream", `{"latency":500}`).
func (p *Proxy) AddToxic(name, typ, stream, attrs string) error {
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	_, err := p.p.Toxics.AddToxicJson(strings.NewReader(body))
	return err
}

// RemoveToxic removes a toxic by name.
func (p *Proxy) RemoveToxic(name string) error {
	return p.p.Toxics.RemoveToxic(context.Background(), name)
}

// ResetFirst resets the connections of the next n requests (each reset
// abruptly, a TCP RST, as a crashed or overloaded server would) and lets later
// ones through; it also starts counting requests, read with Attempts. It cuts
// open connections first so every request starts on a fresh one.
func (p *Proxy) ResetFirst(n int) error {
	counterFor(p.key).reset(int64(n))
	_ = p.p.Toxics.RemoveToxic(context.Background(), "count_reset")
	if err := p.AddToxic("count_reset", "count_reset", "upstream", fmt.Sprintf(`{"key":%q}`, p.key)); err != nil {
		return err
	}
	return p.Cut()
}

// Attempts is how many requests reached the proxy since ResetFirst.
func (p *Proxy) Attempts() int64 { return counterFor(p.key).seen.Load() }

// StopCounting removes the counting toxic.
func (p *Proxy) StopCounting() error { return p.RemoveToxic("count_reset") }

type counter struct {
	seen      atomic.Int64
	resetLeft atomic.Int64
}

func (c *counter) reset(n int64) { c.seen.Store(0); c.resetLeft.Store(n) }

var (
	counters sync.Map // key → *counter
	proxySeq atomic.Int64
)

func counterFor(key string) *counter {
	c, _ := counters.LoadOrStore(key, &counter{})
	return c.(*counter)
}

// countResetToxic counts the first request bytes of each connection (one
// attempt: after a reset the client must open a new connection) and resets
// the connection while the budget of resets lasts.
type countResetToxic struct {
	Key string `json:"key"`
}

func (t *countResetToxic) Pipe(stub *toxics.ToxicStub) {
	c := counterFor(t.Key)
	first := true
	for {
		select {
		case <-stub.Interrupt:
			return
		case chunk := <-stub.Input:
			if chunk == nil {
				stub.Close()
				return
			}
			if first {
				first = false
				c.seen.Add(1)
				if c.resetLeft.Add(-1) >= 0 {
					stub.Close() // SetLinger(0): RST
					return
				}
			}
			stub.Output <- chunk
		}
	}
}

func init() { toxics.Register("count_reset", new(countResetToxic)) }
