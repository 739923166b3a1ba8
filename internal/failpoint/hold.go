package failpoint

import "sync"

// Gate holds the first goroutine that reaches a failpoint until it is
// released; later ones pass straight through. Tests use it to stop one
// operation at an exact point while another runs (a part in flight while a
// finalize lists, a finalize while a delete claims).
type Gate struct {
	name    string
	once    sync.Once
	reached chan struct{}
	release sync.Once
	open    chan struct{}
}

// Hold arms name with a gate.
func Hold(name string) *Gate {
	g := &Gate{name: name, reached: make(chan struct{}), open: make(chan struct{})}
	EnableFunc(name, func() error {
		first := false
		g.once.Do(func() { first = true })
		if first {
			close(g.reached)
			<-g.open
		}
		return nil
	})
	return g
}

// Reached is closed once a goroutine is held at the gate.
func (g *Gate) Reached() <-chan struct{} { return g.reached }

// Release lets the held goroutine (and any later one) go on.
func (g *Gate) Release() { g.release.Do(func() { close(g.open) }) }

// Close releases the gate and disarms the failpoint.
func (g *Gate) Close() {
	Disable(g.name)
	g.Release()
}
