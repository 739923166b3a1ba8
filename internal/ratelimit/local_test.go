package ratelimit

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
)

// The local log is exact like the Redis one: Limit in any Window, and the
// wait it names is when the oldest event leaves the window.
func TestLocalLogIsASlidingWindow(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	l := &Local{Limit: 3, Window: time.Minute, Clock: clk}
	for i := range 3 {
		if ok, _ := l.Allow("erin"); !ok {
			t.Fatalf("event %d refused", i+1)
		}
		clk.SetTime(clk.Now().Add(10 * time.Second))
	}
	// t = 30 s: the first event (t = 0) leaves the window at 60 s.
	if ok, wait := l.Allow("erin"); ok || wait != 30*time.Second {
		t.Fatalf("4th at 30s = %v, %s; want refused for 30s", ok, wait)
	}
	if full, _ := l.Full("erin"); !full {
		t.Fatal("Full = false with 3 events in the window")
	}
	if ok, _ := l.Allow("frank"); !ok {
		t.Fatal("another key is limited too")
	}
	clk.SetTime(time.Unix(1060, 0))
	if ok, _ := l.Allow("erin"); !ok {
		t.Fatal("refused once the oldest event left the window")
	}
	if ok, wait := l.Allow("erin"); ok || wait != 10*time.Second {
		t.Fatalf("next = %v, %s; want refused for 10s (the event at 10s)", ok, wait)
	}
	// Add records whatever the count and keeps only the newest Limit events.
	clk.SetTime(time.Unix(2000, 0))
	for range 5 {
		l.Add("gina")
	}
	if full, wait := l.Full("gina"); !full || wait != time.Minute {
		t.Fatalf("after 5 Adds: full=%v wait=%s; want full for a minute", full, wait)
	}
}

// A bounded number of keys: the least recently used one is forgotten.
func TestLocalLogForgetsTheOldestKeys(t *testing.T) {
	t.Parallel()
	l := &Local{Limit: 1, Window: time.Hour, MaxKeys: 2}
	l.Add("a")
	l.Add("b")
	l.Add("c")
	if full, _ := l.Full("a"); full {
		t.Fatal("key a still remembered past MaxKeys")
	}
	if full, _ := l.Full("c"); !full {
		t.Fatal("key c forgotten")
	}
}

// Redis unreachable with FailLocal: the replica's own log keeps the limit,
// and it already knows what Redis admitted before the cut.
func TestRedisDownKeepsALocalLimit(t *testing.T) {
	t.Parallel()
	fp := faultproxy.New()
	defer fp.Close()
	px, err := fp.Add("redis", "127.0.0.1:6379")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimiter(t, fmt.Sprintf("redis://%s/0", px.Addr), 2, time.Minute, "")
	l.Unreachable = FailLocal
	locals := 0
	l.OnLocal = func() { locals++ }
	ctx := context.Background()
	if d := l.Allow(ctx, "erin"); !d.Allowed || d.Local {
		t.Fatalf("through Redis: %+v", d)
	}
	px.Disable()
	if d := l.Allow(ctx, "erin"); !d.Allowed || !d.Local {
		t.Fatalf("2nd with Redis down: %+v, want allowed by the local log", d)
	}
	if d := l.Allow(ctx, "erin"); d.Allowed || !d.Local || d.RetryAfter <= 0 {
		t.Fatalf("3rd with Redis down: %+v, want refused by the local log (the one Redis admitted counts)", d)
	}
	if locals != 2 || l.FailOpens() != 0 {
		t.Fatalf("local decisions %d, fail-opens %d; want 2 and 0", locals, l.FailOpens())
	}
}

// A flood that exhausts the Redis connection pool does not switch the limit
// off, even in FailOpen mode: the pool timing out is load, not an outage.
func TestExhaustedRedisPoolDecidesLocally(t *testing.T) {
	t.Parallel()
	fp := faultproxy.New()
	defer fp.Close()
	px, err := fp.Add("redis", "127.0.0.1:6379")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimiter(t, fmt.Sprintf("redis://%s/0?pool_size=1", px.Addr), 1, time.Minute, "")
	ctx := context.Background()
	if d := l.Allow(ctx, "erin"); !d.Allowed {
		t.Fatalf("1st: %+v", d)
	}
	// Each answer now takes 200 ms: with one connection, callers queue for
	// the pool and those past its 250 ms wait are told it timed out.
	if err := px.AddToxic("slow", "latency", "downstream", `{"latency":200}`); err != nil {
		t.Fatal(err)
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		allowed   int
		local     int
		failOpens int
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := l.Allow(ctx, "erin")
			mu.Lock()
			defer mu.Unlock()
			if d.Allowed {
				allowed++
			}
			if d.Local {
				local++
			}
			if d.FailedOpen {
				failOpens++
			}
		}()
	}
	wg.Wait()
	if allowed != 0 || failOpens != 0 {
		t.Fatalf("%d of 8 allowed (%d failed open, %d local) with the limit used up; want none", allowed, failOpens, local)
	}
	if local == 0 {
		t.Fatal("no decision was made locally: Redis was never too slow (the test proves nothing)")
	}
}

// A request that costs n takes n of the limit, and waits until n fit.
func TestLocalLogChargesACostOfN(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	l := &Local{Limit: 10, Window: time.Minute, Clock: clk}
	if ok, _ := l.AllowN("erin", 4); !ok { // t=0: 4 used
		t.Fatal("4 of 10 refused")
	}
	clk.SetTime(clk.Now().Add(10 * time.Second))
	if ok, _ := l.AllowN("erin", 5); !ok { // t=10: 9 used
		t.Fatal("5 more refused")
	}
	// 3 more need 2 to leave: the 4 of t=0 leave at t=60.
	if ok, wait := l.AllowN("erin", 3); ok || wait != 50*time.Second {
		t.Fatalf("3 more at 10s = %v, %s; want refused for 50s", ok, wait)
	}
	if ok, _ := l.AllowN("erin", 1); !ok {
		t.Fatal("the 10th refused")
	}
	if ok, wait := l.AllowN("erin", 11); ok || wait != time.Minute {
		t.Fatalf("more than the limit at once = %v, %s", ok, wait)
	}
}

// A key's log grows with the events it holds: a generous limit costs an idle
// key a few timestamps, not Limit of them (a limit of 1<<30 once asked the
// runtime for 24 GiB at the first event), and the window stays exact across
// the growth.
func TestLocalLogGrowsWithItsEvents(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	huge := &Local{Limit: 1 << 30, Window: time.Minute, Clock: clk}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 1000 {
		huge.Add(fmt.Sprintf("key-%d", i))
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("1,000 keys with one event each allocated %d bytes, want under 1 MiB", grew)
	}

	l := &Local{Limit: 10, Window: time.Minute, Clock: clk}
	start := clk.Now()
	for i := range 10 {
		clk.SetTime(start.Add(time.Duration(i) * time.Second))
		if ok, _ := l.Allow("erin"); !ok {
			t.Fatalf("event %d of 10 refused", i+1)
		}
	}
	// At 9 s the 11th waits for the first (t = 0) to leave the window.
	if ok, wait := l.Allow("erin"); ok || wait != 51*time.Second {
		t.Fatalf("11th at 9s = %v, %s; want refused for 51s", ok, wait)
	}
	clk.SetTime(start.Add(60 * time.Second))
	if ok, _ := l.Allow("erin"); !ok {
		t.Fatal("refused after the first event left the window")
	}
	if ok, wait := l.Allow("erin"); ok || wait != time.Second {
		t.Fatalf("next at 60s = %v, %s; want refused for 1s (the event at 1 s leaves at 61 s)", ok, wait)
	}
}
