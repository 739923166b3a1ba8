// Package failpoint lets tests stop the operator at a named point of a code
// path: with an error (in-process crash simulation), by killing the process
// with SIGKILL (a real crash), or by pausing it there for a while (a slow S3,
// a long GC pause: the interleavings a race needs).
//
// Failpoints exist only in builds with the "failpoints" tag (`make test`
// and the end-to-end tests' manager); in any other build, the production
// binary included, Inject does nothing and MOCUPLOAD_FAILPOINTS is refused,
// so no environment variable can make the operator kill itself.
//
// A process enables failpoints at start from MOCUPLOAD_FAILPOINTS, e.g.
// "finalize/after-all-complete=kill,finalize/after-lock=sleep:3s"; tests in the
// same process call Enable or EnableFunc.
package failpoint

import "errors"

// ErrInjected is returned by an "error" failpoint.
var ErrInjected = errors.New("failpoint: injected failure")
