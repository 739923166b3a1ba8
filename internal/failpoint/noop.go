//go:build !failpoints

package failpoint

import (
	"errors"
	"os"
	"time"
)

// Compiled reports whether this build has failpoints.
const Compiled = false

// EnableFunc does nothing in a build without failpoints.
func EnableFunc(string, func() error) {}

// Enable does nothing in a build without failpoints.
func Enable(string, string) {}

// Disable does nothing in a build without failpoints.
func Disable(string) {}

// EnableFromEnv refuses MOCUPLOAD_FAILPOINTS: this build has none.
func EnableFromEnv() error {
	if os.Getenv("MOCUPLOAD_FAILPOINTS") != "" {
		return errors.New("MOCUPLOAD_FAILPOINTS is set, but failpoints exist only in test builds (-tags failpoints)")
	}
	return nil
}

// Inject does nothing in a build without failpoints.
func Inject(string) error { return nil }

// ClockSkew refuses MOCUPLOAD_CLOCK_SKEW: only test builds may run on a
// shifted clock.
func ClockSkew() (time.Duration, error) {
	if os.Getenv("MOCUPLOAD_CLOCK_SKEW") != "" {
		return 0, errors.New("MOCUPLOAD_CLOCK_SKEW is set, but a skewed clock exists only in test builds (-tags failpoints)")
	}
	return 0, nil
}
