package webhook

import (
	"container/list"
	"net"
	"net/http"
	"sync"

	"github.com/mocs-dev/upload-operator/internal/metrics"
)

// idleConns bounds the keep-alive connections waiting for their next request.
// Each holds a goroutine, its stack (which every GC cycle scans) and ~8 KiB
// of buffers for up to the server's IdleTimeout: a client that opens a
// connection per request and never closes one (make abuse's create flood left
// 12,700 open, 250 MiB and a third of the operator's CPU in the collector)
// would otherwise hold memory the parts need. Past the bound the connection
// idle longest is closed; a client busy uploading reuses its connections
// within milliseconds and is the last to lose one.
type idleConns struct {
	max int

	mu     sync.Mutex
	order  *list.List // net.Conn, longest idle first
	at     map[net.Conn]*list.Element
	closed int
}

func newIdleConns(limit int) *idleConns {
	return &idleConns{max: limit, order: list.New(), at: map[net.Conn]*list.Element{}}
}

// track is http.Server's ConnState hook.
func (c *idleConns) track(conn net.Conn, state http.ConnState) {
	var evict net.Conn
	c.mu.Lock()
	if e, ok := c.at[conn]; ok {
		c.order.Remove(e)
		delete(c.at, conn)
	}
	if state == http.StateIdle {
		c.at[conn] = c.order.PushBack(conn)
		if c.order.Len() > c.max {
			e := c.order.Front()
			evict = e.Value.(net.Conn)
			c.order.Remove(e)
			delete(c.at, evict)
			c.closed++
		}
	}
	c.mu.Unlock()
	if evict != nil {
		_ = evict.Close()
		metrics.IdleConnectionsClosed.Inc()
	}
}

// counts reports how many connections wait for a request now and how many
// were closed for the bound so far (for tests).
func (c *idleConns) counts() (idle, closed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len(), c.closed
}
