package ratelimit

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

func redisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// newLimiter returns a limiter on the real Redis under a key prefix of this
// test's own.
func newLimiter(t *testing.T, url string, limit int, window time.Duration, prefix string) *Limiter {
	t.Helper()
	c, err := NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if prefix == "" {
		prefix = "mocupload:" + localenv.RandomName("test") + ":"
	}
	return &Limiter{Redis: c, Prefix: prefix, Limit: limit, Window: window}
}

// At the boundary of the limit the 10th request in the window is allowed, the
// 11th refused with the time until the oldest leaves the window.
func TestTenthRequestAllowedEleventhRefused(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, redisURL(), 10, time.Minute, "")
	ctx := context.Background()
	for i := 1; i <= 10; i++ {
		if d := l.Allow(ctx, "alice"); !d.Allowed {
			t.Fatalf("request %d refused", i)
		}
	}
	d := l.Allow(ctx, "alice")
	if d.Allowed || d.RetryAfter < 59*time.Second || d.RetryAfter > time.Minute {
		t.Fatalf("11th = %+v, want refused with retryAfter just under 60s", d)
	}
	if !l.Allow(ctx, "bob").Allowed {
		t.Fatal("another user is limited too")
	}
	n, err := l.Redis.ZCard(ctx, l.Key("alice")).Result()
	if err != nil || n != 10 {
		t.Fatalf("Redis log of alice holds %d entries (%v), want 10", n, err)
	}
}

// Allowed again once the oldest request leaves the window, and never more
// than Limit admitted in any window, across the window edge. The waits are
// computed from when requests were admitted, with a second or more of margin
// on each side, so a busy machine cannot move a request across the edge.
func TestSlidingWindowHasNoBurstAcrossTheEdge(t *testing.T) {
	t.Parallel()
	const window = 4 * time.Second
	l := newLimiter(t, redisURL(), 10, window, "")
	ctx := context.Background()
	var admitted []time.Time
	try := func() bool {
		d := l.Allow(ctx, "carol")
		if d.Allowed {
			admitted = append(admitted, time.Now())
		}
		return d.Allowed
	}
	for range 5 {
		try()
	}
	if len(admitted) != 5 {
		t.Fatalf("%d of the first 5 admitted", len(admitted))
	}
	lastOfFirst := admitted[4]
	time.Sleep(time.Until(lastOfFirst.Add(window / 2)))
	for range 5 {
		try()
	}
	if try() {
		t.Fatal("11th within the window allowed")
	}
	// A fixed-window counter would reset here and admit 10 more; the sliding
	// log admits only the 5 whose predecessors left the window (the second 5
	// are still in it for another window/2).
	time.Sleep(time.Until(lastOfFirst.Add(window + 100*time.Millisecond)))
	got := 0
	for range 10 {
		if try() {
			got++
		}
	}
	if got != 5 {
		t.Fatalf("after the first 5 left the window, %d admitted, want 5", got)
	}
	for i := range admitted {
		in := 0
		for _, b := range admitted[i:] {
			if b.Sub(admitted[i]) < window-50*time.Millisecond { // minus clock slack between Redis and us
				in++
			}
		}
		if in > 10 {
			t.Fatalf("%d admitted within one window starting at %d", in, i)
		}
	}
	d := l.Allow(ctx, "carol")
	if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > window {
		t.Fatalf("refusal = %+v", d)
	}
	time.Sleep(d.RetryAfter + 100*time.Millisecond)
	if !l.Allow(ctx, "carol").Allowed {
		t.Fatal("not allowed again after retryAfter")
	}
}

// Two replicas (two limiters, one Redis) share one limit.
func TestTwoReplicasShareOneLimit(t *testing.T) {
	t.Parallel()
	a := newLimiter(t, redisURL(), 10, time.Minute, "")
	b := newLimiter(t, redisURL(), 10, time.Minute, a.Prefix)
	ctx := context.Background()
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := a
			if i%2 == 1 {
				l = b
			}
			if l.Allow(ctx, "dave").Allowed {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if allowed != 10 {
		t.Fatalf("%d of 30 concurrent requests across two replicas allowed, want exactly 10", allowed)
	}
}

// Redis cut off (a real proxy refusing connections): requests are allowed
// quickly (fail open) and counted.
func TestRedisDownFailsOpenQuickly(t *testing.T) {
	t.Parallel()
	fp := faultproxy.New()
	defer fp.Close()
	px, err := fp.Add("redis", "127.0.0.1:6379")
	if err != nil {
		t.Fatal(err)
	}
	failOpens := 0
	l := newLimiter(t, fmt.Sprintf("redis://%s/0", px.Addr), 1, time.Minute, "")
	l.OnFailOpen = func() { failOpens++ }
	ctx := context.Background()
	if !l.Allow(ctx, "erin").Allowed || l.Allow(ctx, "erin").Allowed {
		t.Fatal("limit not working through the proxy")
	}
	px.Disable()
	// Each decision is bounded by decisionTimeout; the check allows ten times
	// that (5 s): a decision that is not bounded takes go-redis's dial and
	// read timeouts with its retries, tens of seconds, while a machine whose
	// two cores are busy with the rest of the suite has been seen to take
	// over a second for a bounded one.
	for range 3 {
		start := time.Now()
		// frank: erin is known refused for a minute, which needs no Redis.
		if d := l.Allow(ctx, "frank"); !d.Allowed || !d.FailedOpen {
			t.Fatalf("with Redis down: %+v, want allowed (fail open)", d)
		}
		if took := time.Since(start); took > 10*decisionTimeout {
			t.Errorf("a fail-open decision took %s", took)
		}
	}
	if failOpens != 3 || l.FailOpens() != 3 {
		t.Fatalf("fail-opens counted %d/%d, want 3", failOpens, l.FailOpens())
	}
	// Stalled instead of refused: still quick, and a stall (a timeout, which
	// load provokes too) is decided by the local log: gina's first request
	// passes, her second is refused there.
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	if err := px.AddToxic("stall", "timeout", "upstream", `{"timeout":0}`); err != nil {
		t.Fatal(err)
	}
	if err := px.Cut(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if d := l.Allow(ctx, "gina"); !d.Allowed || !d.Local {
		t.Fatalf("with Redis stalled: %+v, want allowed by the local log", d)
	}
	if d := l.Allow(ctx, "gina"); d.Allowed || !d.Local {
		t.Fatalf("with Redis stalled, again: %+v, want refused by the local log", d)
	}
	if took := time.Since(start); took > 10*decisionTimeout {
		t.Errorf("stalled Redis decision took %s", took)
	}
}

// A caller refused by Redis is refused from memory until its window frees:
// hammering costs Redis nothing (the Redis log is not touched), and the
// answer names the same wait.
func TestRefusalsAreRememberedUntilTheWindowFrees(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, redisURL(), 1, time.Minute, "")
	ctx := context.Background()
	if !l.Allow(ctx, "hammer").Allowed {
		t.Fatal("first refused")
	}
	first := l.Allow(ctx, "hammer")
	if first.Allowed {
		t.Fatal("second allowed")
	}
	// Redis gone: a refusal from memory needs no Redis at all.
	if err := l.Redis.Close(); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		d := l.Allow(ctx, "hammer")
		if d.Allowed || d.FailedOpen || d.Local || d.RetryAfter <= 0 || d.RetryAfter > first.RetryAfter {
			t.Fatalf("hammering after a refusal: %+v; want refused from memory within %s", d, first.RetryAfter)
		}
	}
}
