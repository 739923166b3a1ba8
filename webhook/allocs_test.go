package webhook

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"github.com/mocs-dev/upload-operator/internal/session"
)

// The part path's allocations per part, measured by TestPartPathAllocations
// (docs/benchmarks.md, "Go benchmarks", has BenchmarkPutPart's figures). An
// allocation count does not move with the machine's load, unlike time: a
// change that allocates per read or per KiB of the body, or puts a part's
// bytes on the heap, fails here. Raise a limit only with a reason in the
// commit; lower it when the path gets cheaper.
const (
	maxAllocsPerPart = 1000
	// Bytes allocated on the Go heap per 1 MiB part: the part itself lives in
	// an off-heap slab, so this is headers, the SDK's request and the rows
	// (62 KB when the limit was set). One 32 KiB copy buffer per part more
	// (io.Copy through the body, as the SDK's SHA-256 of the payload does)
	// fails it.
	maxHeapBytesPerPart = 80 << 10
)

// TestPartPathAllocations runs the part handler end to end (routing, auth,
// the session, file and register rows in the real PostgreSQL, the buffer and
// the SDK's request) against the in-memory S3 sink and counts what each part
// allocates. Not parallel: the counts are the process's.
func TestPartPathAllocations(t *testing.T) {
	const partSize = session.MiB
	sink := &s3Sink{}
	api := benchAPI(t, testDB, sink, 256*session.MiB)
	sessID, fileID := benchSession(t, testDB, partSize)
	h := api.Handler()
	body := bytes.Repeat([]byte{0x5a}, int(partSize))
	path := fmt.Sprintf("/api/mocs/uploads/sessions/%s/files/%s/parts/", sessID, fileID)
	n := 0
	put := func() {
		n++
		serveBenchPart(t, h, path, n, body)
	}
	const runs = 50
	put() // warm: the auth cache, the pool's connections, the first slab
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	allocs := testing.AllocsPerRun(runs, put)
	runtime.ReadMemStats(&after)
	// AllocsPerRun calls put once more to warm up.
	heap := (after.TotalAlloc - before.TotalAlloc) / (runs + 1)
	t.Logf("per 1 MiB part: %.0f allocations, %d bytes on the heap (limits %d, %d)", allocs, heap, maxAllocsPerPart, maxHeapBytesPerPart)
	if allocs > maxAllocsPerPart {
		t.Errorf("a part costs %.0f allocations, more than %d", allocs, maxAllocsPerPart)
	}
	if heap > maxHeapBytesPerPart {
		t.Errorf("a part allocates %d bytes on the heap, more than %d", heap, maxHeapBytesPerPart)
	}
	if got := sink.received.Load(); got != int64(n)*partSize {
		t.Errorf("the sink received %d bytes for %d parts of %d", got, n, partSize)
	}
}
