//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Compiled reports whether this build has failpoints.
const Compiled = true

var (
	mu     sync.RWMutex
	points = map[string]string{}
	funcs  = map[string]func() error{}
)

// EnableFunc arms name with a function run at that point (in-process tests:
// e.g. cut a real proxy to a server exactly there, or wait for the test to
// let the code go on); its error is returned.
func EnableFunc(name string, fn func() error) { mu.Lock(); funcs[name] = fn; mu.Unlock() }

// Enable arms name with action "error", "kill" or "sleep:<duration>".
func Enable(name, action string) { mu.Lock(); points[name] = action; mu.Unlock() }

// Disable disarms name.
func Disable(name string) { mu.Lock(); delete(points, name); delete(funcs, name); mu.Unlock() }

// EnableFromEnv arms the failpoints listed in MOCUPLOAD_FAILPOINTS.
func EnableFromEnv() error {
	v := os.Getenv("MOCUPLOAD_FAILPOINTS")
	if v == "" {
		return nil
	}
	for _, kv := range strings.Split(v, ",") {
		name, action, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || !validAction(action) {
			return fmt.Errorf("MOCUPLOAD_FAILPOINTS: %q: want name=error, name=kill or name=sleep:<duration>", kv)
		}
		Enable(name, action)
	}
	return nil
}

func validAction(a string) bool {
	if d, ok := strings.CutPrefix(a, "sleep:"); ok {
		_, err := time.ParseDuration(d)
		return err == nil
	}
	return a == "error" || a == "kill"
}

// Inject fires the failpoint name if armed.
func Inject(name string) error {
	mu.RLock()
	action, ok := points[name]
	fn := funcs[name]
	mu.RUnlock()
	if fn != nil {
		return fn()
	}
	if !ok {
		return nil
	}
	if d, ok := strings.CutPrefix(action, "sleep:"); ok {
		pause, _ := time.ParseDuration(d)
		fmt.Fprintf(os.Stderr, "failpoint %s: sleeping %s\n", name, pause)
		time.Sleep(pause)
		return nil
	}
	if action == "kill" {
		fmt.Fprintf(os.Stderr, "failpoint %s: SIGKILL\n", name)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	return fmt.Errorf("%w at %s", ErrInjected, name)
}

// ClockSkew is how far MOCUPLOAD_CLOCK_SKEW (a Go duration, e.g. "-30s")
// shifts the replica's own clock: what a replica whose NTP broke sees. The
// soak uses it; locks and rate limits judge time on PostgreSQL's and Redis's
// clocks, so only expiry and retention may move with it.
func ClockSkew() (time.Duration, error) {
	v := os.Getenv("MOCUPLOAD_CLOCK_SKEW")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("MOCUPLOAD_CLOCK_SKEW: %w", err)
	}
	return d, nil
}
