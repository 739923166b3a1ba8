// Package leakcheck finds goroutines a package's tests left running.
// testenv.Main calls it after m.Run and after its own clean-up (servers
// stopped, pools closed), so anything still running is a goroutine the code
// under test failed to stop.
package leakcheck

import (
	"fmt"
	"net/http"
	"os"

	"go.uber.org/goleak"
)

// ignored are goroutines that outlive a test by design, not by a bug of ours:
// the runtime's and libraries' process-wide workers. An HTTP client's idle
// keep-alive connections are not among them: Check closes the idle
// connections of http.DefaultTransport first, and the code under test closes
// its own transports, so a connection still open after that is a transport
// or a response body it leaked.
var ignored = []goleak.Option{
	// klog's and the OpenCensus/OTel exporters' flush daemons start at init.
	goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
}

// Check closes the idle connections of http.DefaultTransport, then prints
// the goroutines still running, ignoring those above, and returns the exit
// code it calls for. It waits a little for goroutines that are on their way
// out.
func Check() int {
	http.DefaultClient.CloseIdleConnections()
	if err := goleak.Find(ignored...); err != nil {
		fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%v\n", err)
		return 1
	}
	return 0
}
