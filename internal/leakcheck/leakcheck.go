// Package leakcheck finds goroutines a package's tests left running. Each
// package whose code starts goroutines calls it from TestMain, after m.Run
// and after its own clean-up (servers stopped, pools closed), so anything
// still running is a goroutine the code under test failed to stop.
package leakcheck

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// ignored are goroutines that outlive a test by design, not by a bug of ours:
// an HTTP client's idle keep-alive connections (closed by the transport's
// idle timeout), and the runtime's and libraries' process-wide workers.
var ignored = []goleak.Option{
	goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	// klog's and the OpenCensus/OTel exporters' flush daemons start at init.
	goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
}

// Main runs the package's tests, then the leak check; a leak fails the run.
// For packages whose TestMain has nothing else to do.
func Main(m *testing.M, extra ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		code = Check(extra...)
	}
	os.Exit(code)
}

// Check prints the goroutines still running, ignoring those above and any
// extra ones the caller names, and returns the exit code it calls for. It
// waits a little for goroutines that are on their way out.
func Check(extra ...goleak.Option) int {
	if err := goleak.Find(append(append([]goleak.Option{}, ignored...), extra...)...); err != nil {
		fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%v\n", err)
		return 1
	}
	return 0
}
