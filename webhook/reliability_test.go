package webhook

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/go-logr/logr"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
)

func hold(t *testing.T, point string) *failpoint.Gate {
	t.Helper()
	g := failpoint.Hold(point)
	t.Cleanup(g.Close)
	return g
}

func reached(t *testing.T, g *failpoint.Gate) {
	t.Helper()
	select {
	case <-g.Reached():
	case <-time.After(30 * time.Second):
		t.Fatal("nothing reached the failpoint")
	}
}

// A client (or a load balancer) that gives up on a finalize half way does not
// cancel it: the finalize runs to the commit, and the client's retry gets the
// MOC as a replay (200).
func TestFinalizeOutlivesAClientThatGivesUp(t *testing.T) {
	svc := testService(t, nil)
	srv := serve(t, svc, 25*time.Second)
	s := newSession(t, svc, 6*session.MiB)
	for n := 1; n <= 2; n++ {
		if a := s.putPart(t, srv.URL, n); a.status != http.StatusOK {
			t.Fatalf("part %d: %d %v", n, a.status, a.body)
		}
	}
	g := hold(t, "finalize/after-lock")
	ctx, giveUp := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		_, err := send(ctx, t, http.MethodPost, srv.URL+"/api/mocs/uploads/finalize", s.owner, s.finalizeBody("Patient castle"))
		gone <- err
	}()
	reached(t, g)
	giveUp()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("the client's request: %v; want it cancelled", err)
	}
	g.Release()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a, err := send(context.Background(), t, http.MethodPost, srv.URL+"/api/mocs/uploads/finalize", s.owner, s.finalizeBody("Patient castle"))
		if err != nil {
			t.Fatal(err)
		}
		if a.status == http.StatusOK && a.body["slug"] == "patient-castle" {
			return // the abandoned finalize committed; this is its replay
		}
		if a.code() != "FINALIZE_IN_PROGRESS" || time.Now().After(deadline) {
			t.Fatalf("retry: %d %v; want the committed MOC (200)", a.status, a.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// requestTimeoutS3 answers every UploadPart with S3's 400 RequestTimeout (S3
// gave up waiting for the body) and passes the rest to the real S3.
func requestTimeoutS3(t *testing.T, attempts *atomic.Int32) *httptest.Server {
	t.Helper()
	target, err := url.Parse(testS3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
			attempts.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeout</Code>`+
				`<Message>Your socket connection to the server was not read from or written to within the timeout period.</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Faults of S3 that end before the part's deadline answer 503
// S3_UNAVAILABLE, whatever the errors call themselves: connection attempts
// that time out (S3 drops packets) are not the part's 408, and S3's own
// RequestTimeout (a 400 the SDK retries) is not a bad part.
func TestPartAnswersUnderS3Faults(t *testing.T) {
	hole, err := faultproxy.NewBlackhole()
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	var attempts atomic.Int32
	timeouts := requestTimeoutS3(t, &attempts)
	for _, tc := range []struct {
		name     string
		endpoint string
		attempts int32
	}{
		{"S3 drops connection attempts", "http://" + hole.Addr, 0},
		{"S3 answers RequestTimeout", timeouts.URL, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			healthy := testService(t, nil)
			s := newSession(t, healthy, 100)
			opts := testS3.Options()
			opts.Endpoint, opts.DialTimeout = tc.endpoint, 200*time.Millisecond
			srv := serve(t, testService(t, &opts), 20*time.Second)
			attempts.Store(0)
			start := time.Now()
			a := s.putPart(t, srv.URL, 1)
			if a.status != http.StatusServiceUnavailable || a.code() != "S3_UNAVAILABLE" || a.body["retryable"] != true ||
				a.header.Get("Retry-After") == "" {
				t.Fatalf("= %d %v after %s; want 503 S3_UNAVAILABLE with Retry-After", a.status, a.body, time.Since(start))
			}
			if tc.attempts > 0 && attempts.Load() != tc.attempts {
				t.Fatalf("attempts that reached S3 = %d, want %d", attempts.Load(), tc.attempts)
			}
		})
	}
}

// A part that finishes after its session expired answers 410, and after it
// was deleted 404, whether the S3 write came before or after.
func TestPartFinishingAfterTheSessionEndedAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, point, change string
		status              int
		code                string
	}{
		{"expired during the S3 write", "part/before-s3", "expire", http.StatusGone, "SESSION_EXPIRED"},
		{"expired before the record", "part/before-record", "expire", http.StatusGone, "SESSION_EXPIRED"},
		{"deleted during the S3 write", "part/before-s3", "delete", http.StatusNotFound, "SESSION_NOT_FOUND"},
		{"deleted before the record", "part/before-record", "delete", http.StatusNotFound, "SESSION_NOT_FOUND"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := testService(t, nil)
			clk := clocktesting.NewFakePassiveClock(time.Now())
			svc.Clock = clk
			srv := serve(t, svc, 25*time.Second)
			s := newSession(t, svc, 6*session.MiB)
			g := hold(t, tc.point)
			done := s.putPartAsync(srv.URL, 1)
			reached(t, g)
			switch tc.change {
			case "expire":
				clk.SetTime(clk.Now().Add(2 * time.Hour))
				expiredOnPostgreSQL(t, s.act.Session.ID)
				if ok, err := svc.Expire(context.Background(), logr.Discard(), s.act.Session.ID); !ok || err != nil {
					t.Fatalf("expire: %v %v", ok, err)
				}
			case "delete":
				if err := svc.Discard(context.Background(), logr.Discard(), s.act.Session.ID); err != nil {
					t.Fatal(err)
				}
			}
			g.Release()
			if a := await(t, done); a.status != tc.status || a.code() != tc.code {
				t.Fatalf("= %d %v; want %d %s", a.status, a.body, tc.status, tc.code)
			}
		})
	}
}

// What S3 says when it refuses a part (it names the bucket, the key and the
// request) stays in the operator's log: the client gets the stable code only.
func TestRefusedPartAnswersOnlyTheCode(t *testing.T) {
	target, err := url.Parse(testS3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	denying := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>`+
				`<Message>Access Denied to arn:aws:s3:::mocs/internal-key by role operator-prod</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer denying.Close()
	s := newSession(t, testService(t, nil), 100)
	opts := testS3.Options()
	opts.Endpoint = denying.URL
	srv := serve(t, testService(t, &opts), 20*time.Second)
	a := s.putPart(t, srv.URL, 1)
	if a.status != http.StatusBadRequest || a.code() != "INVALID_PART" || len(a.body) != 1 {
		t.Fatalf("= %d %v; want 400 with nothing but the INVALID_PART code", a.status, a.body)
	}
}

// Parts that do not fit in memory are spilled within SPILL_BUDGET_BYTES: a
// part that would go past it is answered 503 SERVER_BUSY with Retry-After
// instead of filling the node's disk.
func TestSpillBudgetAnswersBusy(t *testing.T) {
	svc := testService(t, nil)
	svc.Buffers = partbuf.New(1, t.TempDir()) // no memory: every part spills
	svc.Buffers.SpillBudget = 6 * session.MiB
	srv := serve(t, svc, 25*time.Second)
	first, second := newSession(t, svc, 6*session.MiB), newSession(t, svc, 6*session.MiB)
	g := hold(t, "part/before-s3")
	held := first.putPartAsync(srv.URL, 1) // 5 MiB on disk while held
	reached(t, g)
	a := second.putPart(t, srv.URL, 1)
	if a.status != http.StatusServiceUnavailable || a.code() != "SERVER_BUSY" || a.header.Get("Retry-After") == "" {
		t.Fatalf("a part past the spill budget: %d %v", a.status, a.body)
	}
	g.Release()
	if a := await(t, held); a.status != http.StatusOK {
		t.Fatalf("the held part: %d %v", a.status, a.body)
	}
	if a := second.putPart(t, srv.URL, 1); a.status != http.StatusOK {
		t.Fatalf("the refused part, sent again: %d %v", a.status, a.body)
	}
}

// A part can have as many PUTs in flight as it has slots less the
// acknowledged one (ADR 0001, "Parts"); one more is refused at once with 429
// and window "in-flight", and goes through once the others ended.
func TestTooManyPutsOfOnePartAnswerInFlight(t *testing.T) {
	svc := testService(t, nil)
	srv := serve(t, svc, 25*time.Second)
	s := newSession(t, svc, 6*session.MiB)
	inFlight := session.SlotsPerPart(s.act.Files[0].PartCount) - 1
	if a := s.putPart(t, srv.URL, 1); a.status != http.StatusOK {
		t.Fatalf("first PUT: %d %v", a.status, a.body)
	}
	arrived := make(chan struct{}, inFlight)
	release := make(chan struct{})
	failpoint.EnableFunc("part/before-s3", func() error {
		arrived <- struct{}{}
		<-release
		return nil
	})
	t.Cleanup(func() { failpoint.Disable("part/before-s3") })
	answers := make(chan answer, inFlight)
	for range inFlight {
		go func() {
			a, err := send(context.Background(), t, http.MethodPut, srv.URL+s.partPath(1), s.owner, s.part(1))
			if err != nil {
				a.status = -1
			}
			answers <- a
		}()
	}
	for range inFlight {
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			t.Fatal("the PUTs did not all reach S3's doorstep")
		}
	}
	a := s.putPart(t, srv.URL, 1)
	if a.status != http.StatusTooManyRequests || a.code() != "RATE_LIMIT_EXCEEDED" || a.body["window"] != "in-flight" ||
		a.body["limit"] != float64(inFlight) || a.header.Get("Retry-After") == "" {
		t.Fatalf("PUT %d of one part in flight: %d %v; want 429 RATE_LIMIT_EXCEEDED, window in-flight, limit %d", inFlight+1, a.status, a.body, inFlight)
	}
	close(release)
	for range inFlight {
		select {
		case a := <-answers:
			if a.status != http.StatusOK {
				t.Fatalf("a PUT in flight: %d %v", a.status, a.body)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("a PUT in flight did not end")
		}
	}
	failpoint.Disable("part/before-s3")
	if a := s.putPart(t, srv.URL, 1); a.status != http.StatusOK {
		t.Fatalf("the refused PUT sent again: %d %v", a.status, a.body)
	}
}

// The upload API answers about a session on the engine's session clock, the
// one the reconciler and the part path read: past expiresAt by that clock a
// GET says expired (the reconciler catches up) and a part is refused, though
// PostgreSQL's clock has not got there.
func TestTheAPIAsksTheEnginesClock(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	clk := clocktesting.NewFakePassiveClock(time.Now())
	svc.Clock = clk
	srv := serve(t, svc, 25*time.Second)
	s := newSession(t, svc, 6*session.MiB)
	if a := s.get(t, srv.URL); a.status != http.StatusOK || a.body["status"] != "active" {
		t.Fatalf("before expiresAt: %d %v; want 200 active", a.status, a.body)
	}
	clk.SetTime(s.act.Session.ExpiresAt.Add(time.Second))
	if a := s.get(t, srv.URL); a.status != http.StatusOK || a.body["status"] != "expired" {
		t.Fatalf("past expiresAt on the engine's clock: %d %v; want 200 expired", a.status, a.body)
	}
	if a := await(t, s.putPartAsync(srv.URL, 1)); a.status != http.StatusGone || a.code() != "SESSION_EXPIRED" {
		t.Fatalf("a part past expiresAt: %d %v; want 410 SESSION_EXPIRED", a.status, a.body)
	}
}
