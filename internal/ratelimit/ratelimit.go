// Package ratelimit limits finalize requests per user with a sliding-window
// log in Redis: at most Limit requests in any Window, exactly, shared by every
// replica. A GCRA (e.g. redis_rate's PerMinute(10)) admits about 19
// in the first minute and does not meet "10 in any 60 s"; a log of admission
// times does. One Lua script makes check-and-record atomic, and Redis's own
// clock (TIME) is the only clock, so replica clock skew does not matter.
package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	"k8s.io/utils/lru"

	"github.com/mocs-dev/upload-operator/internal/logging"
)

// script: KEYS[1] the user's log (a sorted set of admission times in µs);
// ARGV: window (µs), limit, a random member suffix. Returns {allowed, wait µs}.
var script = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
`)

// Limiter is one replica's handle on the shared limit.
type Limiter struct {
	Redis  *redis.Client
	Prefix string // REDIS_KEY_PREFIX
	// Name tells limits apart in Redis ("finalize" when empty; "create").
	Name   string
	Limit  int
	Window time.Duration
	// OnFailOpen, if set, counts requests allowed because Redis was unreachable.
	OnFailOpen func()
	// Unreachable is what decides while Redis cannot be asked: FailOpen (no
	// limit, the story's decision for finalize) or FailLocal (this replica's
	// in-memory log with the same Limit and Window). Either way a Redis that
	// answers too slowly (the connection pool exhausted, a read timing out,
	// which a flood of requests provokes) is decided locally: a flood must
	// not switch its own brake off.
	Unreachable FailMode
	// OnLocal, if set, counts requests decided by the local log.
	OnLocal func()

	failOpens atomic.Int64
	localOnce sync.Once
	local     *Local

	// refused remembers, per key, until when Redis said no request can pass
	// (the oldest admission leaving the window): a caller hammering past its
	// limit is refused from memory until then, costing Redis nothing.
	refusedMu sync.Mutex
	refused   *lru.Cache
}

// FailMode is a Limiter's decision while Redis is unreachable.
type FailMode int

const (
	// FailOpen allows every request while Redis is unreachable.
	FailOpen FailMode = iota
	// FailLocal limits each replica with its own in-memory log.
	FailLocal
)

// Decision is the outcome for one request.
type Decision struct {
	Allowed bool
	// RetryAfter is how long until a request may pass again (when refused).
	RetryAfter time.Duration
	// FailedOpen: Redis could not be asked; the request was allowed.
	FailedOpen bool
	// Local: Redis could not be asked; this replica's own log decided.
	Local bool
}

// NewClient returns a Redis client with short timeouts and no retries, so that
// a fail-open decision with Redis down costs milliseconds, not seconds.
func NewClient(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 250*time.Millisecond, 250*time.Millisecond, 250*time.Millisecond
	opt.MaxRetries = 0
	opt.PoolTimeout = 250 * time.Millisecond
	opt.DialerRetries, opt.DialerRetryTimeout = 1, 10*time.Millisecond
	redis.SetLogger(quiet{}) // failures are logged once, as our WARN line
	return redis.NewClient(opt), nil
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// decisionTimeout bounds one decision whatever Redis does.
const decisionTimeout = 500 * time.Millisecond

// Key is the Redis key of a user's log.
func (l *Limiter) Key(user string) string {
	name := l.Name
	if name == "" {
		name = "finalize"
	}
	return l.Prefix + "ratelimit:" + name + ":" + user
}

// Allow records the request if it may pass. Redis unreachable → the
// Unreachable mode decides (logged WARN and counted); Redis too slow → the
// local log decides.
func (l *Limiter) Allow(ctx context.Context, user string) Decision {
	if wait := l.refusedFor(user); wait > 0 {
		return Decision{RetryAfter: wait}
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	ctx, cancel := context.WithTimeout(ctx, decisionTimeout)
	defer cancel()
	res, err := script.Run(ctx, l.Redis, []string{l.Key(user)}, l.Window.Microseconds(), l.Limit, hex.EncodeToString(suffix)).Int64Slice()
	if err == nil && len(res) == 2 {
		if res[0] == 1 {
			// The local log mirrors what this replica admitted, so that a
			// switch to it does not start from an empty window.
			l.localLog().Add(user)
			return Decision{Allowed: true}
		}
		wait := time.Duration(res[1]) * time.Microsecond
		l.refuseUntil(user, time.Now().Add(wait))
		return Decision{RetryAfter: wait}
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("user", user)
	if l.Unreachable == FailLocal || !unreachable(err) {
		if l.OnLocal != nil {
			l.OnLocal()
		}
		logging.Warn(log, "rate limiter unavailable; this replica's own limit decides", "error", fmt.Sprint(err))
		ok, wait := l.localLog().Allow(user)
		return Decision{Allowed: ok, RetryAfter: wait, Local: true}
	}
	l.failOpens.Add(1)
	if l.OnFailOpen != nil {
		l.OnFailOpen()
	}
	logging.Warn(log, "rate limiter unavailable; allowing the request (fail open)", "error", fmt.Sprint(err))
	return Decision{Allowed: true, FailedOpen: true}
}

// unreachable tells an outage (Redis refuses or resets connections, or none
// can be made) from load (a timeout waiting for the pool, for an answer or
// for the decision's deadline, which a flood of requests provokes by itself).
// Only an outage may fail open.
func unreachable(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// refusedFor is how long user is still known to be refused (0: ask Redis).
func (l *Limiter) refusedFor(user string) time.Duration {
	l.refusedMu.Lock()
	defer l.refusedMu.Unlock()
	if l.refused == nil {
		return 0
	}
	v, ok := l.refused.Get(user)
	if !ok {
		return 0
	}
	return time.Until(v.(time.Time))
}

func (l *Limiter) refuseUntil(user string, t time.Time) {
	l.refusedMu.Lock()
	defer l.refusedMu.Unlock()
	if l.refused == nil {
		l.refused = lru.New(10000)
	}
	l.refused.Add(user, t)
}

func (l *Limiter) localLog() *Local {
	l.localOnce.Do(func() { l.local = &Local{Limit: l.Limit, Window: l.Window} })
	return l.local
}

// FailOpens is how many requests were allowed with Redis unreachable.
func (l *Limiter) FailOpens() int64 { return l.failOpens.Load() }

// HTTP adapts the limiter to the upload API: whole seconds ≥ 1 for Retry-After.
type HTTP struct{ *Limiter }

// Allow implements webhook.RateLimiter.
func (h HTTP) Allow(r *http.Request, user string) (bool, int) {
	d := h.Limiter.Allow(r.Context(), user)
	if d.Allowed {
		return true, 0
	}
	secs := int((d.RetryAfter + time.Second - 1) / time.Second)
	return false, max(secs, 1)
}
