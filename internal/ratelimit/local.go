package ratelimit

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
)

// Local is a sliding-window log kept in this replica's memory: at most Limit
// events per key in any Window, exactly, like the Redis limiter. It is the
// brake that stays when Redis cannot be asked, and the per-address budget of
// failed authentications (which must cost nothing remote to count).
//
// Keys are held in an LRU of MaxKeys (default 10,000): an attacker cycling
// through more keys than that only forgets its own oldest history. A key's log
// grows with the events it holds (up to Limit), so memory follows the traffic
// in the window, never MaxKeys × Limit up front: a limit of a million per
// minute costs an idle key a few timestamps.
type Local struct {
	Limit  int
	Window time.Duration
	// MaxKeys bounds how many keys are remembered (default 10,000).
	MaxKeys int
	// Clock is the real clock when nil.
	Clock clock.PassiveClock

	once sync.Once
	mu   sync.Mutex
	logs *lru.Cache
}

// log is one key's admitted events, oldest first, as a ring that grows (by
// doubling) up to limit slots.
type log struct {
	at    []time.Time
	start int
	n     int
	limit int
}

// initialLogSlots is the ring a new key starts with.
const initialLogSlots = 4

// Allow records an event for key if fewer than Limit happened in the last
// Window; otherwise it returns how long until one may.
func (l *Local) Allow(key string) (bool, time.Duration) {
	return l.take(key, 1, true)
}

// AllowN records n events for key if they fit in Limit with those of the last
// Window (a request that costs n times another); otherwise it returns how
// long until they may. n above Limit never fits.
func (l *Local) AllowN(key string, n int) (bool, time.Duration) {
	return l.take(key, max(n, 1), true)
}

// Full reports, without recording anything, whether key has used its Limit
// in the last Window, and how long until it has room again.
func (l *Local) Full(key string) (bool, time.Duration) {
	ok, wait := l.take(key, 1, false)
	return !ok, wait
}

// Add records an event for key whatever the count (the caller has already
// decided; the log keeps only the newest Limit events).
func (l *Local) Add(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lg := l.logOf(key)
	now := l.now()
	lg.prune(now, l.Window)
	lg.push(now)
}

func (l *Local) take(key string, n int, record bool) (bool, time.Duration) {
	if l.Limit <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lg := l.logOf(key)
	now := l.now()
	lg.prune(now, l.Window)
	if n > l.Limit {
		return false, l.Window
	}
	if lg.n+n <= l.Limit {
		if record {
			for range n {
				lg.push(now)
			}
		}
		return true, 0
	}
	// Room for n once the oldest lg.n+n−Limit events have left the window.
	return false, lg.at[(lg.start+lg.n+n-l.Limit-1)%len(lg.at)].Add(l.Window).Sub(now)
}

func (l *Local) logOf(key string) *log {
	l.once.Do(func() {
		size := l.MaxKeys
		if size <= 0 {
			size = 10000
		}
		l.logs = lru.New(size)
	})
	if v, ok := l.logs.Get(key); ok {
		return v.(*log)
	}
	limit := max(l.Limit, 1)
	lg := &log{at: make([]time.Time, min(limit, initialLogSlots)), limit: limit}
	l.logs.Add(key, lg)
	return lg
}

func (g *log) prune(now time.Time, window time.Duration) {
	for g.n > 0 && !g.at[g.start].Add(window).After(now) {
		g.start = (g.start + 1) % len(g.at)
		g.n--
	}
}

func (g *log) push(t time.Time) {
	if g.n == len(g.at) && len(g.at) < g.limit {
		grown := make([]time.Time, min(2*len(g.at), g.limit))
		k := copy(grown, g.at[g.start:])
		copy(grown[k:], g.at[:g.start])
		g.at, g.start = grown, 0
	}
	if g.n == len(g.at) {
		g.start = (g.start + 1) % len(g.at)
		g.n--
	}
	g.at[(g.start+g.n)%len(g.at)] = t
	g.n++
}

func (l *Local) now() time.Time {
	if l.Clock != nil {
		return l.Clock.Now()
	}
	return time.Now()
}
