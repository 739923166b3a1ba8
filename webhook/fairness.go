package webhook

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// InFlight counts each user's part requests being served on this replica
// (MAX_PARTS_IN_FLIGHT_PER_USER): one caller opening many slow connections
// holds at most Limit of the replica's part buffers, however many
// connections it opens.
type InFlight struct {
	Limit int

	mu sync.Mutex
	n  map[string]int
}

// Acquire counts a part request of user in, unless user already has Limit.
func (f *InFlight) Acquire(user string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	if f.n[user] >= f.Limit {
		return false
	}
	f.n[user]++
	return true
}

// Release counts a request of user out.
func (f *InFlight) Release(user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[user] <= 1 {
		delete(f.n, user) // the map holds only users with requests in flight
		return
	}
	f.n[user]--
}

// minRateBody cuts a part body that arrives slower than rate bytes a second
// once grace has passed since its first read, by moving the connection's
// read deadline along with what has arrived: with got bytes read, the body
// falls behind at start + max(grace, got/rate) unless more arrive. A
// request that sends nothing thus holds its part buffer for the grace, not
// for the whole part timeout. The deadline never passes hardDeadline (the
// part timeout), which keeps its own answer.
type minRateBody struct {
	io.ReadCloser
	rc           *http.ResponseController
	rate         int64
	grace        time.Duration
	hardDeadline time.Time
	now          func() time.Time

	start   time.Time
	got     int64
	tooSlow atomic.Bool
}

func (b *minRateBody) Read(p []byte) (int, error) {
	if b.start.IsZero() {
		b.start = b.now()
		b.moveDeadline()
	}
	n, err := b.ReadCloser.Read(p)
	b.got += int64(n)
	if n > 0 {
		b.moveDeadline()
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && b.now().Before(b.hardDeadline) {
		b.tooSlow.Store(true)
	}
	return n, err
}

func (b *minRateBody) moveDeadline() {
	due := b.start.Add(max(b.grace, time.Duration(float64(b.got)/float64(b.rate)*float64(time.Second))))
	if due.After(b.hardDeadline) {
		due = b.hardDeadline
	}
	_ = b.rc.SetReadDeadline(due)
}

// TooSlow reports whether the body was cut for falling below the rate.
func (b *minRateBody) TooSlow() bool { return b.tooSlow.Load() }
