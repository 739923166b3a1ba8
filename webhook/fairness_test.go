package webhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/ratelimit"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// serveAPI runs api (its Log, Auth and Uploads filled in when empty).
func serveAPI(t *testing.T, svc *uploads.Service, api *API) string {
	t.Helper()
	if api.Auth == nil {
		api.Auth = &auth.Authenticator{Reviewer: tokenUsers{}, TTL: time.Minute}
	}
	api.Log, api.Uploads = logr.Discard(), svc
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// putFrom sends part n with its body read from body (a pipe the test feeds)
// and returns where the answer arrives.
func (s *activeSession) putFrom(base string, n int, body io.Reader) <-chan answer {
	done := make(chan answer, 1)
	go func() {
		a := answer{status: -1}
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, base+s.partPath(n), body)
		if err == nil {
			req.ContentLength = int64(len(s.part(n)))
			req.Header.Set("Authorization", "Bearer "+s.owner)
			var resp *http.Response
			if resp, err = http.DefaultClient.Do(req); err == nil {
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				a = answer{status: resp.StatusCode, header: resp.Header}
				_ = json.Unmarshal(raw, &a.body)
			}
		}
		if err != nil {
			a.body = map[string]any{"transport": err.Error()}
		}
		done <- a
	}()
	return done
}

func (f *InFlight) count(user string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[user]
}

// One user with slow connections holds at most MAX_PARTS_IN_FLIGHT_PER_USER
// part requests; the next is refused before anything is read, and other
// users are not affected.
func TestPartsInFlightPerUserAreBounded(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	api := &API{PartTimeout: 30 * time.Second, PartsInFlight: &InFlight{Limit: 2}}
	base := serveAPI(t, svc, api)
	s := newSession(t, svc, 11*session.MiB) // parts 1–3
	var writers []*io.PipeWriter
	var answers []<-chan answer
	for n := 1; n <= 2; n++ {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		answers = append(answers, s.putFrom(base, n, pr))
	}
	waitFor(t, "both slow PUTs in flight", func() bool { return api.PartsInFlight.count(s.owner) == 2 })

	a := s.putPart(t, base, 3)
	if a.status != http.StatusTooManyRequests || a.code() != "RATE_LIMIT_EXCEEDED" || a.body["window"] != "in-flight" ||
		a.body["limit"] != float64(2) || a.header.Get("Retry-After") != "1" {
		t.Fatalf("third PUT while two are in flight: %d %v %v; want 429 in-flight, limit 2, Retry-After 1", a.status, a.body, a.header)
	}
	other := newSession(t, svc, 5*session.MiB)
	if a := other.putPart(t, base, 1); a.status != http.StatusOK {
		t.Fatalf("another user's PUT meanwhile: %d %v", a.status, a.body)
	}
	for i, pw := range writers {
		go func() { _, _ = pw.Write(s.part(i + 1)); _ = pw.Close() }()
		if a := await(t, answers[i]); a.status != http.StatusOK {
			t.Fatalf("slow PUT %d once sent: %d %v", i+1, a.status, a.body)
		}
	}
	if a := s.putPart(t, base, 3); a.status != http.StatusOK {
		t.Fatalf("third PUT sent again: %d %v", a.status, a.body)
	}
	if n := api.PartsInFlight.count(s.owner); n != 0 {
		t.Fatalf("%d requests still counted in flight", n)
	}
}

// A body that stops arriving is cut once it falls below MIN_PART_RATE after
// the grace (408 naming the rate, not the part timeout's timeoutAt), its
// buffer is given back, and nothing of it is kept; a body arriving above
// the rate, however slowly, is not cut.
func TestSlowPartBodyIsCutAtTheMinimumRate(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	// 256 KiB/s after a 1 s grace, and a body at ten times that below: the
	// margin holds on a loaded CI machine (at 1 MiB/s and 300 ms a stalled
	// writer goroutine once made the fast body look slow).
	api := &API{PartTimeout: 20 * time.Second, MinPartRate: 256 << 10, MinPartRateGrace: time.Second}
	base := serveAPI(t, svc, api)
	s := newSession(t, svc, 5*session.MiB)

	pr, pw := io.Pipe()
	done := s.putFrom(base, 1, pr)
	go func() { _, _ = pw.Write(s.part(1)[:64<<10]) }() // then nothing
	a := await(t, done)
	_ = pw.Close()
	elapsed, _ := a.body["elapsedMs"].(float64)
	if a.status != http.StatusRequestTimeout || a.code() != "REQUEST_TIMEOUT" || a.body["minBytesPerSecond"] != float64(256<<10) ||
		a.body["timeoutAt"] == nil || a.body["receivedBytes"] != float64(64<<10) || elapsed >= 20000 {
		t.Fatalf("stalled body: %d %v; want 408 REQUEST_TIMEOUT for the minimum rate (elapsedMs, timeoutAt, receivedBytes), before the part timeout", a.status, a.body)
	}
	waitFor(t, "the stalled part's buffer given back", func() bool { return svc.Buffers.Stats().InUseBytes == 0 })
	parts, err := testDB.Parts(context.Background(), s.act.Session.ID)
	if err != nil || len(parts[s.act.Files[0].ID]) != 0 {
		t.Fatalf("parts recorded after the cut: %v %v", parts, err)
	}

	// 2.5 MiB/s in 128 KiB steps: slow, but above the rate.
	pr, pw = io.Pipe()
	done = s.putFrom(base, 1, pr)
	go func() {
		defer pw.Close()
		body := s.part(1)
		for off := 0; off < len(body); off += 128 << 10 {
			if _, err := pw.Write(body[off:min(off+128<<10, len(body))]); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if a := await(t, done); a.status != http.StatusOK {
		t.Fatalf("a body above the rate: %d %v", a.status, a.body)
	}
}

// An address that keeps failing to authenticate gets 429 before any review.
func TestFailedAuthenticationsFromOneAddressAreRefused(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	api := &API{PartTimeout: time.Minute, Auth: &auth.Authenticator{Reviewer: tokenUsers{}, TTL: time.Minute, RequireJWT: true,
		Failures: &ratelimit.Local{Limit: 2, Window: time.Minute}}}
	base := serveAPI(t, svc, api)
	get := func(token string) answer {
		a, err := send(context.Background(), t, http.MethodGet, base+"/api/mocs/uploads/sessions/00000000-0000-0000-0000-000000000000", token, nil)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for range 2 {
		if a := get("garbage"); a.status != http.StatusUnauthorized {
			t.Fatalf("garbage token: %d %v", a.status, a.body)
		}
	}
	enc := base64.RawURLEncoding.EncodeToString
	token := enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"sub":"x"}`)) + ".c2ln"
	a := get(token)
	if a.status != http.StatusTooManyRequests || a.code() != "RATE_LIMIT_EXCEEDED" || a.body["window"] != "auth-failures" ||
		a.body["limit"] != float64(2) || a.header.Get("Retry-After") == "" {
		t.Fatalf("after 2 failures: %d %v; want 429 RATE_LIMIT_EXCEEDED window auth-failures", a.status, a.body)
	}
}

// A finalize sent before any part answers INCOMPLETE_UPLOAD with a bounded
// body: the first 100 missing part numbers of each file and their count.
func TestIncompleteUploadAnswerIsBounded(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serveAPI(t, svc, &API{PartTimeout: time.Minute})
	s := newSession(t, svc, 101*5*session.MiB) // 101 parts, none sent
	a, err := send(context.Background(), t, http.MethodPost, base+"/api/mocs/uploads/finalize", s.owner, s.finalizeBody("Too Early"))
	if err != nil {
		t.Fatal(err)
	}
	id := s.act.Files[0].ID.String()
	listed, _ := a.body["missingParts"].(map[string]any)
	counts, _ := a.body["missingPartCounts"].(map[string]any)
	parts, _ := listed[id].([]any)
	if a.status != http.StatusBadRequest || a.code() != "INCOMPLETE_UPLOAD" || len(parts) != 100 || parts[0] != float64(1) ||
		counts[id] != float64(101) || a.body["truncated"] != true {
		t.Fatalf("= %d %v; want INCOMPLETE_UPLOAD listing parts 1–100 of 101, truncated", a.status, a.body)
	}
}

// A client that stops reading an answer gets its connection cut once the
// answer's write deadline passes: the handler's writes fail instead of
// blocking for good.
func TestAnAnswerNobodyReadsIsCutAtItsWriteDeadline(t *testing.T) {
	t.Parallel()
	api := &API{Log: logr.Discard(), ResponseWriteTimeout: 300 * time.Millisecond}
	writeErr := make(chan error, 1)
	h := api.withCorrelation(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 1<<20)
		for range 256 { // far more than the sockets' buffers hold
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	select { // and never read
	case err := <-writeErr:
		if err == nil {
			t.Fatal("256 MiB written to a client that reads nothing")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the handler is still writing to a client that reads nothing")
	}
}

// GETs are limited per user (each GET of a direct session lists every file in
// S3); another user is not affected.
func TestSessionGetsAreLimitedPerUser(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serveAPI(t, svc, &API{PartTimeout: time.Minute, GetLimiter: &ratelimit.Local{Limit: 3, Window: time.Minute}, GetLimitWindow: "1m"})
	s := newSession(t, svc, 5*session.MiB)
	other := newSession(t, svc, 5*session.MiB)
	get := func(s *activeSession) answer {
		a, err := send(context.Background(), t, http.MethodGet, base+"/api/mocs/uploads/sessions/"+s.act.Session.ID.String(), s.owner, nil)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for i := range 3 {
		if a := get(s); a.status != http.StatusOK {
			t.Fatalf("GET %d: %d %v", i+1, a.status, a.body)
		}
	}
	if a := get(s); a.status != http.StatusTooManyRequests || a.body["window"] != "1m" || a.body["limit"] != float64(3) || a.header.Get("Retry-After") == "" {
		t.Fatalf("4th GET: %d %v; want 429 with limit 3, window 1m", a.status, a.body)
	}
	if a := get(other); a.status != http.StatusOK {
		t.Fatalf("another user's GET: %d %v", a.status, a.body)
	}
}

// A caller whose parts hold its share of memory and of the spill budget gets
// 429 window "buffers" before its body is read.
func TestPartOverTheCallersBufferShareIsRefused(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	svc.Buffers = partbuf.New(8*session.MiB, t.TempDir())
	svc.Buffers.SpillBudget, svc.Buffers.OwnerShare = 8*session.MiB, 0.5 // 4 MiB each: no 5 MiB part fits
	base := serveAPI(t, svc, &API{PartTimeout: time.Minute})
	s := newSession(t, svc, 5*session.MiB)
	a := s.putPart(t, base, 1)
	if a.status != http.StatusTooManyRequests || a.code() != "RATE_LIMIT_EXCEEDED" || a.body["window"] != "buffers" || a.header.Get("Retry-After") == "" {
		t.Fatalf("= %d %v; want 429 window buffers", a.status, a.body)
	}
}

// A GET of a direct session lists every file in S3: it costs the GET limit
// one per file.
func TestDirectSessionGetsCostOnePerFile(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serveAPI(t, svc, &API{PartTimeout: time.Minute, GetLimiter: &ratelimit.Local{Limit: 10, Window: time.Minute}, GetLimitWindow: "1m"})
	act, err := svc.Activate(context.Background(), uploads.Request{SessionID: uuid.New(), Owner: "system:serviceaccount:webhook-test:lister",
		Transfer: store.TransferDirect, Files: []session.File{
			{Name: "a.pdf", ContentType: "application/pdf", SizeBytes: 100}, {Name: "b.pdf", ContentType: "application/pdf", SizeBytes: 100},
			{Name: "c.pdf", ContentType: "application/pdf", SizeBytes: 100}, {Name: "d.pdf", ContentType: "application/pdf", SizeBytes: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	get := func() answer {
		a, err := send(context.Background(), t, http.MethodGet, base+"/api/mocs/uploads/sessions/"+act.Session.ID.String(), act.Session.UserID, nil)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for i := range 2 { // 4 + 4 of 10
		if a := get(); a.status != http.StatusOK {
			t.Fatalf("GET %d: %d %v", i+1, a.status, a.body)
		}
	}
	if a := get(); a.status != http.StatusTooManyRequests {
		t.Fatalf("third GET of a 4-file direct session with 10 a minute: %d %v; want 429", a.status, a.body)
	}
}
