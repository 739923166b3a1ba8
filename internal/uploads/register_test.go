package uploads_test

import (
	"bytes"
	"context"
	"errors"
	"io"
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
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// Each part is a register (ADR 0001, "Parts"): an answer other than 200
// changes nothing the session holds, a 200 holds until a later or overlapping
// 200 replaces it, GET lists the last one, and the finalized object holds what
// GET listed. These tests drive the three ways a hostile or unlucky client
// broke that when every version of a part shared one S3 part number.

// listedETag is the ETag GET (Received) lists for part n of file.
func listedETag(t *testing.T, svc *uploads.Service, ts *testSession, file, n int) string {
	t.Helper()
	sess, err := svc.Session(context.Background(), ts.id)
	must(t, err)
	_, parts, err := svc.Received(context.Background(), sess)
	must(t, err)
	for _, p := range parts[ts.act.Files[file].ID] {
		if p.PartNumber == n {
			return p.ETag
		}
	}
	t.Fatalf("GET lists no part %d of file %d", n, file)
	return ""
}

// partRange is the byte range of part n of file.
func (ts *testSession) partRange(file, n int) (lo, hi int64) {
	ps := ts.act.Session.PartSizeBytes
	lo = int64(n-1) * ps
	return lo, min(lo+ps, int64(len(ts.data[file])))
}

// A re-send that loses the race with finalize (409) must leave the
// acknowledged bytes in place: finalize completes the file with them, and GET
// keeps listing them. With one S3 part number per part the refused bytes had
// already replaced the acknowledged ones (cut-through), and finalize answered
// INCOMPLETE_UPLOAD for parts GET listed as present.
func TestRefusedResendLeavesTheAcknowledgedPart(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 11*session.MiB)
	ts.uploadAll(t, svc)
	title := "Register " + ts.id.String()[:8]
	before := map[int]string{}
	for n := 1; n <= 3; n++ {
		before[n] = listedETag(t, svc, ts, 0, n)
	}

	// Every part sent again with other bytes; S3 has them all, none recorded yet.
	g := holdAt(t, "part/before-record")
	first := storePartAsync(svc, ts, 0, 1, ts.otherBytes(0, 1))
	g.wait(t)
	var rest []<-chan error
	for n := 2; n <= 3; n++ {
		rest = append(rest, storePartAsync(svc, ts, 0, n, ts.otherBytes(0, n)))
	}
	// Parts 2 and 3 pass the gate (it holds only the first) and are
	// acknowledged; their new bytes are the data now.
	for i, done := range rest {
		if err := receiveErr(t, done); err != nil {
			t.Fatalf("re-send of part %d: %v", i+2, err)
		}
		lo, hi := ts.partRange(0, i+2)
		copy(ts.data[0][lo:hi], ts.otherBytes(0, i+2))
	}
	res, err := finalize(svc, ts, title)
	if err != nil || !res.Created {
		t.Fatalf("finalize while a re-send of part 1 is in flight: %+v, %v; want the MOC of the acknowledged parts", res, err)
	}
	g.release()
	var na *uploads.NotActiveError
	if err := receiveErr(t, first); !errors.As(err, &na) {
		t.Fatalf("re-send of part 1 finishing after the finalize: %v; want refused (409)", err)
	}
	if got := listedETag(t, svc, ts, 0, 1); got != before[1] {
		t.Fatalf("GET lists part 1 as %s after its refused re-send; want the acknowledged %s", got, before[1])
	}
	assertOneMOC(t, svc, ts) // part 1 holds the first version, parts 2 and 3 the second
}

// A re-send that starts after finalize took the lock is refused before any of
// its bytes reach S3.
func TestResendAfterTheLockWritesNothingToS3(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	g := holdAt(t, "finalize/after-lock")
	done := finalizeAsync(svc, ts, "Locked "+ts.id.String()[:8])
	g.wait(t)
	f := ts.act.Files[0]
	before, err := svc.S3.ListParts(context.Background(), f.S3Key, f.S3UploadID)
	must(t, err)
	var na *uploads.NotActiveError
	if err := receiveErr(t, storePartAsync(svc, ts, 0, 1, ts.otherBytes(0, 1))); !errors.As(err, &na) {
		t.Fatalf("PUT while finalize holds the lock: %v; want refused (409)", err)
	}
	after, err := svc.S3.ListParts(context.Background(), f.S3Key, f.S3UploadID)
	must(t, err)
	if len(after) != len(before) {
		t.Fatalf("S3 lists %d parts after a refused PUT, %d before: the refused bytes reached S3", len(after), len(before))
	}
	for i := range after {
		if after[i] != before[i] {
			t.Fatalf("S3 part %d changed under a refused PUT: %+v → %+v", after[i].PartNumber, before[i], after[i])
		}
	}
	g.release()
	if r := receive(t, done); r.err != nil || !r.res.Created {
		t.Fatalf("finalize: %+v, %v", r.res, r.err)
	}
	assertOneMOC(t, svc, ts)
}

// Two PUTs of one part with different bytes, both answered 200: S3 stores A
// then B, PostgreSQL records B then A. GET lists A (the last 200), so the
// object must hold A. With one S3 part number per part S3 held B and both
// ETags counted as acknowledged: the object held B while GET listed A.
func TestConcurrentPutsOfOnePartEndAsGETListsThem(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	a := ts.otherBytes(0, 1)
	b := bytes.Clone(a)
	for i := range b {
		b[i] ^= 0x33
	}
	g := holdAt(t, "part/before-record")
	putA := storePartAsync(svc, ts, 0, 1, a) // in S3, held before its record
	g.wait(t)
	if err := receiveErr(t, storePartAsync(svc, ts, 0, 1, b)); err != nil { // in S3 after A, recorded first
		t.Fatalf("PUT B: %v", err)
	}
	g.release()
	if err := receiveErr(t, putA); err != nil { // recorded last: the last 200
		t.Fatalf("PUT A: %v", err)
	}
	if got, want := listedETag(t, svc, ts, 0, 1), `"`+hexMD5(a)+`"`; got != want {
		t.Fatalf("GET lists part 1 as %s; want A's %s (its 200 came last)", got, want)
	}
	copy(ts.data[0], a)
	if res, err := finalize(svc, ts, "Overlap "+ts.id.String()[:8]); err != nil || !res.Created {
		t.Fatalf("finalize: %+v, %v", res, err)
	}
	assertOneMOC(t, svc, ts)
}

// An SDK attempt that stalls on its way to S3 and lands after everything
// else: attempt 1 of PUT X is held by a proxy, attempt 2 succeeds (200 X),
// the client sends Y (200 Y), then attempt 1 reaches S3. The client's last 200
// was Y, and GET lists Y: the object must hold Y. With one S3 part number per
// part attempt 1 replaced Y in S3 and finalize completed the part with X.
func TestLingeringAttemptDoesNotReplaceALaterPart(t *testing.T) {
	px := newStallProxy(t)
	svc, _ := newService(t)
	o := s3srv.Options()
	o.Endpoint = px.endpoint()
	svc.S3 = objectstore.New(o)
	ts := activate(t, svc, 6*session.MiB)
	x := ts.otherBytes(0, 1)
	y := ts.data[0][:5*session.MiB]

	px.armPartUpload()
	if err := receiveErr(t, storePartAsync(svc, ts, 0, 1, x)); err != nil {
		t.Fatalf("PUT X (its first attempt held, the second through): %v", err)
	}
	if !px.holding() {
		t.Fatal("the proxy held no attempt of PUT X: the scenario did not happen")
	}
	ts.uploadAll(t, svc) // Y for part 1, and part 2
	if got, want := listedETag(t, svc, ts, 0, 1), `"`+hexMD5(y)+`"`; got != want {
		t.Fatalf("GET lists part 1 as %s after Y's 200; want %s", got, want)
	}
	if status := px.release(t); status != http.StatusOK {
		t.Fatalf("the held attempt of X reached S3 with %d; want it stored (200) for the scenario", status)
	}
	if res, err := finalize(svc, ts, "Lingering "+ts.id.String()[:8]); err != nil || !res.Created {
		t.Fatalf("finalize: %+v, %v", res, err)
	}
	assertOneMOC(t, svc, ts) // part 1 is Y
}

// stallProxy is an HTTP proxy in front of versitygw that, once armed, takes
// the whole of the next part upload (an UploadPart request), resets the
// client's connection (the SDK retries on a new one, which passes), and keeps
// the request until release sends it to S3: an attempt that lingers.
type stallProxy struct {
	srv   *http.Server
	ln    net.Listener
	proxy *httputil.ReverseProxy
	up    *url.URL

	armed atomic.Bool
	mu    sync.Mutex
	held  *http.Request
	body  []byte
}

func newStallProxy(t *testing.T) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	up, err := url.Parse("http://" + s3srv.Addr)
	must(t, err)
	p := &stallProxy{ln: ln, up: up, proxy: httputil.NewSingleHostReverseProxy(up)}
	p.proxy.ErrorLog = nil
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

func (p *stallProxy) endpoint() string { return "http://" + p.ln.Addr().String() }
func (p *stallProxy) armPartUpload()   { p.armed.Store(true) }

func (p *stallProxy) holding() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held != nil
}

func (p *stallProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") && p.armed.CompareAndSwap(true, false) {
		body, err := io.ReadAll(r.Body)
		if err == nil {
			p.mu.Lock()
			p.held, p.body = r.Clone(context.WithoutCancel(r.Context())), body
			p.mu.Unlock()
		}
		// A reset, as a connection dropped on its way: the SDK retries.
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
		return
	}
	p.proxy.ServeHTTP(w, r)
}

// release sends the held attempt to S3 as it was signed and returns S3's status.
func (p *stallProxy) release(t *testing.T) int {
	t.Helper()
	p.mu.Lock()
	held, body := p.held, p.body
	p.mu.Unlock()
	if held == nil {
		t.Fatal("nothing held")
	}
	u := *held.URL
	u.Scheme, u.Host = p.up.Scheme, p.up.Host
	req, err := http.NewRequest(held.Method, u.String(), bytes.NewReader(body))
	must(t, err)
	req.Header = held.Header.Clone()
	req.Host = held.Host // what the SDK signed
	req.ContentLength = held.ContentLength
	req.TransferEncoding = held.TransferEncoding
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
