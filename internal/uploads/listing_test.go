package uploads_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/session"
)

// listCounter is a real HTTP proxy in front of versitygw that counts (and
// slows) ListParts requests.
type listCounter struct {
	lists atomic.Int64
	delay time.Duration
	next  http.Handler
}

func (c *listCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method == http.MethodGet && q.Has("uploadId") && !q.Has("partNumber") {
		c.lists.Add(1)
		time.Sleep(c.delay)
	}
	c.next.ServeHTTP(w, r)
}

func newListCounter(t *testing.T) (*listCounter, string) {
	t.Helper()
	up, err := url.Parse("http://" + s3srv.Addr)
	must(t, err)
	c := &listCounter{delay: 50 * time.Millisecond, next: httputil.NewSingleHostReverseProxy(up)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return c, "http://" + ln.Addr().String()
}

// A flood of GETs of a direct session shares its S3 listings: 50 at once of a
// session of 10 files cost at most two listings (one in flight, one started
// for those that came after it began), not 50 × 10 ListParts; and a GET never
// gets a listing that started before it: a part S3 took before the GET shows.
func TestDirectListingsAreSharedButNeverOlderThanTheRequest(t *testing.T) {
	t.Parallel()
	counter, endpoint := newListCounter(t)
	svc, _ := newService(t)
	o := s3srv.Options()
	o.Endpoint = endpoint
	svc.S3 = objectstore.New(o)
	sizes := make([]int64, 10)
	for i := range sizes {
		sizes[i] = 100
	}
	ts := activateDirect(t, svc, append(sizes[:9], 6*session.MiB)...) // the last file has 2 parts, both sent
	ctx := context.Background()
	sess, err := svc.Session(ctx, ts.id)
	must(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			_, parts, err := svc.Received(ctx, sess)
			if err == nil && len(parts) != 10 {
				err = fmt.Errorf("listed %d files, want 10", len(parts))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	if n := counter.lists.Load(); n > 20 {
		t.Fatalf("50 GETs at once made %d ListParts; want at most 2 listings of 10 files", n)
	}

	// Part 2 of the last file sent again with other bytes, then a GET: it
	// lists the new version, not a listing from before.
	f := ts.act.Files[9]
	lo, hi := ts.partRange(9, 2)
	other := bytes.Repeat([]byte{7}, int(hi-lo))
	etag, err := svc.S3.UploadPart(ctx, f.S3Key, f.S3UploadID, 2, bytes.NewReader(other), hi-lo, objectstore.Checksums{})
	must(t, err)
	_, parts, err := svc.Received(ctx, sess)
	must(t, err)
	for _, p := range parts[f.ID] {
		if p.PartNumber == 2 && p.ETag != etag {
			t.Fatalf("GET after the part lists ETag %s; want the new %s", p.ETag, etag)
		}
	}
}
