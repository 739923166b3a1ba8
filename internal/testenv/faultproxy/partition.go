package faultproxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// Partition is a TCP relay that can go silent the way a network partition
// does: once cut, bytes in either direction are dropped and nothing is closed
// — not the connections it holds open, and not the upstream side when the
// client gives up and closes its own (its FIN is lost in the partition too).
// toxiproxy's timeout toxic drops data but passes a close on, which lets the
// server notice what a real partition would hide from it.
type Partition struct {
	ln       net.Listener
	upstream string
	cut      atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// NewPartition relays a free loopback port to upstream (host:port).
func NewPartition(upstream string) (*Partition, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Partition{ln: ln, upstream: upstream}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the address to dial instead of the upstream.
func (p *Partition) Addr() string { return p.ln.Addr().String() }

// Cut drops every byte from now on, in both directions, on open and new
// connections, and closes nothing.
func (p *Partition) Cut() { p.cut.Store(true) }

// Heal lets bytes through again (connections that lost bytes are broken;
// new ones work).
func (p *Partition) Heal() { p.cut.Store(false) }

// Close closes the listener and every connection.
func (p *Partition) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Partition) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *Partition) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c)
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.track(up)
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies src to dst while the partition is healed; on src's end it
// closes dst only if the partition is healed (a close does not cross it).
func (p *Partition) pipe(src, dst net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.cut.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil && !errors.Is(werr, net.ErrClosed) {
				return
			}
		}
		if err != nil {
			if !p.cut.Load() {
				_ = dst.Close()
			}
			return
		}
	}
}
