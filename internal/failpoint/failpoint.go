// Package failpoint lets tests stop the operator at a named point of a code
// path: with an error (in-process crash simulation) or by killing the process
// with SIGKILL (a real crash). Production sets none; Inject is then one map
// lookup under a read lock.
//
// A process enables failpoints at start from MOCUPLOAD_FAILPOINTS, e.g.
// "finalize/after-all-complete=kill"; tests in the same process call Enable.
package failpoint

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
)

// ErrInjected is returned by an "error" failpoint.
var ErrInjected = errors.New("failpoint: injected failure")

var (
	mu     sync.RWMutex
	points = map[string]string{}
	funcs  = map[string]func() error{}
)

// EnableFunc arms name with a function run at that point (in-process tests:
// e.g. cut a real proxy to a server exactly there); its error is returned.
func EnableFunc(name string, fn func() error) { mu.Lock(); funcs[name] = fn; mu.Unlock() }

// Enable arms name with action "error" or "kill".
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
		if !ok || (action != "error" && action != "kill") {
			return fmt.Errorf("MOCUPLOAD_FAILPOINTS: %q: want name=error or name=kill", kv)
		}
		Enable(name, action)
	}
	return nil
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
	if action == "kill" {
		fmt.Fprintf(os.Stderr, "failpoint %s: SIGKILL\n", name)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	return fmt.Errorf("%w at %s", ErrInjected, name)
}
