package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Reliability behaviours of the upload API, through the real manager over
// HTTP. S3 retries are in reliability_test.go, part timeouts in
// timeout_test.go, CORS in browser_test.go (and webhook/cors_test.go), the
// sliding window itself in internal/ratelimit; docs/story-coverage.md maps
// the original test plan onto these tests.

// S3 takes at most 10,000 parts, so part 10001 is refused before any lookup,
// naming the valid range.
func TestPartNumberAbove10000IsRefused(t *testing.T) {
	u := createUpload(t, user(t), fileReq{"vr.pdf", pdf, 10})
	r := call(t, "", "PUT", strings.TrimSuffix(u.partPath(0, 1), "/1")+"/10001", u.token, strings.NewReader("0123456789"))
	if r.status != 400 || r.str("error") != "INVALID_PART_NUMBER" {
		t.Fatalf("= %d %s", r.status, r.raw)
	}
	validRange(1, 10000)(t, r)
}

// Part numbers start at 1: 0 and negative numbers answer 400 with the range.
func TestPartNumberBelowOneIsRefused(t *testing.T) {
	u := createUpload(t, user(t), fileReq{"vr.pdf", pdf, 10})
	for _, n := range []string{"0", "-1"} {
		r := call(t, "", "PUT", strings.TrimSuffix(u.partPath(0, 1), "/1")+"/"+n, u.token, strings.NewReader("0123456789"))
		if r.status != 400 || r.str("error") != "INVALID_PART_NUMBER" {
			t.Fatalf("part %s: %d %s", n, r.status, r.raw)
		}
		validRange(1, 10000)(t, r)
	}
}

// A duplicate title answers 409 with suggestedSlug and retryStrategy; the
// AUTO_APPEND flow (title + " (1)") lands on the suggestion.
func TestSlugConflictSuggestsTheAutoAppendSlug(t *testing.T) {
	acct := user(t)
	title := uniqueTitle("Slug Castle")
	finalized(t, acct, title, fileReq{"a.pdf", pdf, 10})
	b := createUpload(t, acct, fileReq{"b.pdf", pdf, 10})
	b.putAll(t, "")
	r := b.finalize(t, "", title)
	if r.status != 409 || r.str("error") != "SLUG_CONFLICT" || r.str("retryStrategy") != "AUTO_APPEND" ||
		!strings.HasSuffix(r.str("suggestedSlug"), "-1") {
		t.Fatalf("= %d %s", r.status, r.raw)
	}
	retry := b.finalize(t, "", title+" (1)")
	if retry.status != 201 || retry.str("slug") != r.str("suggestedSlug") {
		t.Fatalf("auto-append retry: %d %s, want slug %s", retry.status, retry.raw, r.str("suggestedSlug"))
	}
}

// An active session whose finalizing_at is 10 minutes old (a finalizer that
// died holding the lock) finalizes with 201, and the takeover is logged WARN
// "stale lock recovered" with the request's correlation id.
func TestStaleFinalizeLockIsTakenOverAndLogged(t *testing.T) {
	rep := startReplica(t, map[string]string{"WATCH_NAMESPACE": "no-such-namespace"})
	u := createUpload(t, user(t), fileReq{"lr.pdf", pdf, 10})
	u.putAll(t, "")
	if _, err := db.Exec(context.Background(), `UPDATE upload_sessions SET finalizing_at = NOW() - INTERVAL '10 minutes' WHERE id = $1`, u.id); err != nil {
		t.Fatal(err)
	}
	r := call(t, rep.url, "POST", "/api/mocs/uploads/finalize", u.token,
		jsonBody(map[string]any{"uploadSessionId": u.id, "title": uniqueTitle("Stale Castle")}), withHeader("X-Correlation-ID", "stale-lock"))
	if r.status != 201 {
		t.Fatalf("= %d %s", r.status, r.raw)
	}
	warn := linesWhere(readLogs(t, rep.log), "level", "warn", "msg", "stale lock recovered", "correlationId", "stale-lock", "sessionId", u.id)
	if len(warn) != 1 {
		t.Fatalf("WARN stale lock recovered lines = %d, want 1", len(warn))
	}
	if age, _ := warn[0]["lockAgeMs"].(float64); age < 9*60*1000 {
		t.Errorf("lockAgeMs = %v, want about 10 minutes", warn[0]["lockAgeMs"])
	}
}

// The 11th finalize request of a user within a minute answers 429 with
// retryAfter, limit and window, and Retry-After; every finalize request counts
// (these are 404s); the Redis log holds 10 entries; an admin is never limited.
func TestEleventhFinalizeInAMinuteIsRateLimited(t *testing.T) {
	prefix := "mocupload:rl-" + uuid.NewString()[:8] + ":"
	rep := startReplica(t, map[string]string{"REDIS_KEY_PREFIX": prefix, "FINALIZE_RATE_LIMIT": "10/1m", "WATCH_NAMESPACE": "no-such-namespace"})
	acct := serviceAccount(t, "default", "rate-limited")
	body := func() *strings.Reader {
		return strings.NewReader(fmt.Sprintf(`{"uploadSessionId":%q,"title":"x"}`, uuid.NewString()))
	}
	first := time.Now()
	for i := 1; i <= 10; i++ {
		if r := call(t, rep.url, "POST", "/api/mocs/uploads/finalize", acct.token, body()); r.status != 404 {
			t.Fatalf("request %d: %d %s", i, r.status, r.raw)
		}
	}
	r := call(t, rep.url, "POST", "/api/mocs/uploads/finalize", acct.token, body())
	if r.status != 429 || r.str("error") != "RATE_LIMIT_EXCEEDED" || r.body["limit"] != float64(10) || r.str("window") != "1m" {
		t.Fatalf("11th: %d %s", r.status, r.raw)
	}
	// retryAfter is whole seconds until the first request leaves the 1-minute
	// window: at most 60, at least 60 less the time the requests took
	// (rounded up), and the header says the same.
	ra, ok := r.body["retryAfter"].(float64)
	lowest := 60 - math.Ceil(time.Since(first).Seconds())
	if !ok || ra != math.Trunc(ra) || ra > 60 || ra < lowest || r.header.Get("Retry-After") != strconv.Itoa(int(ra)) {
		t.Fatalf("retryAfter %v (want whole seconds in [%v, 60]), Retry-After %q", r.body["retryAfter"], lowest, r.header.Get("Retry-After"))
	}
	opt, err := redis.ParseURL(stack.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if n, err := rdb.ZCard(context.Background(), prefix+"ratelimit:finalize:"+acct.name).Result(); err != nil || n != 10 {
		t.Fatalf("Redis log entries = %d (%v), want 10", n, err)
	}
	adm := admin(t)
	for i := 1; i <= 15; i++ {
		if r := call(t, rep.url, "POST", "/api/mocs/uploads/finalize", adm.token, body()); r.status != 404 {
			t.Fatalf("admin request %d: %d %s", i, r.status, r.raw)
		}
	}
}

// JSON logs with the part and finalize fields; one correlation id on every line
// of a request and on the reconciler's lines for the session.
func TestStructuredLogsCarryFieldsAndCorrelation(t *testing.T) {
	rep := startReplica(t, map[string]string{"WATCH_NAMESPACE": "no-such-namespace"})
	acct := user(t)
	corr := "logs-" + uuid.NewString()[:8]
	cr := call(t, rep.url, "POST", "/api/mocs/uploads/sessions", acct.token,
		strings.NewReader(`{"files":[{"name":"log.pdf","contentType":"application/pdf","sizeBytes":6291456}],"partSizeBytes":5242880}`),
		withHeader("X-Correlation-ID", corr))
	if cr.status != 201 {
		t.Fatalf("%d %s", cr.status, cr.raw)
	}
	fileID := cr.body["files"].([]any)[0].(map[string]any)["fileId"].(string)
	u := &upload{id: cr.str("sessionId"), partSize: 5 << 20, token: acct.token,
		files: []uploadFile{{id: fileID, data: make([]byte, 6<<20), partCount: 2}}}
	for n := 1; n <= 2; n++ {
		if r := u.put(t, rep.url, 0, n, withHeader("X-Correlation-ID", corr)); r.status != 200 {
			t.Fatal(r.status)
		}
	}
	f := call(t, rep.url, "POST", "/api/mocs/uploads/finalize", acct.token,
		jsonBody(map[string]any{"uploadSessionId": u.id, "title": uniqueTitle("Logged Castle")}), withHeader("X-Correlation-ID", corr))
	if f.status != 201 {
		t.Fatalf("%d %s", f.status, f.raw)
	}
	logs := readLogs(t, rep.log)
	parts := linesWhere(logs, "msg", "part uploaded", "sessionId", u.id)
	if len(parts) != 2 {
		t.Fatalf("part lines = %d", len(parts))
	}
	for _, l := range parts {
		for _, k := range []string{"sessionId", "fileId", "partNumber", "sizeBytes", "etag", "durationMs", "correlationId", "ts"} {
			if _, ok := l[k]; !ok {
				t.Errorf("part line lacks %s: %v", k, l)
			}
		}
		if l.str("level") != "info" || l.str("correlationId") != corr {
			t.Errorf("part line %v", l)
		}
	}
	fin := linesWhere(logs, "msg", "finalize succeeded", "sessionId", u.id)
	if len(fin) != 1 {
		t.Fatalf("finalize lines = %d", len(fin))
	}
	for _, k := range []string{"mocId", "fileCount", "totalSizeBytes", "durationMs"} {
		if _, ok := fin[0][k]; !ok {
			t.Errorf("finalize line lacks %s: %v", k, fin[0])
		}
	}
	if fin[0].str("level") != "info" || fin[0].str("correlationId") != corr || fin[0]["totalSizeBytes"] != float64(6<<20) {
		t.Errorf("finalize line %v", fin[0])
	}
	// Every line the API wrote about this session carries the correlation id.
	for _, l := range linesWhere(logs, "sessionId", u.id) {
		if l.str("correlationId") != corr {
			t.Errorf("line without the correlation id: %v", l)
		}
	}
	// The reconciler (main manager) carries it onto its lines for the session.
	waitFor(t, 20*time.Second, "reconciler line with the correlation id", func() (bool, string) {
		got := linesWhere(readLogs(t, mgrLog), "sessionId", u.id, "msg", "session finalized")
		for _, l := range got {
			if l.str("correlationId") == corr {
				return true, ""
			}
		}
		return false, fmt.Sprint(got)
	})
}

// An ETag from S3 that does not look like one (here rewritten by a
// proxy in front of the real S3) is logged WARN, and still stored and
// returned exactly as S3 sent it.
func TestETagOfUnexpectedShapeIsWarnedAndKeptOpaque(t *testing.T) {
	target, _ := url.Parse(stack.S3.Endpoint)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method == http.MethodPut && resp.Request.URL.Query().Get("partNumber") != "" {
			resp.Header.Set("ETag", `"W/odd-etag"`)
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	defer srv.Close()
	rep := startReplica(t, map[string]string{"S3_ENDPOINT": srv.URL, "WATCH_NAMESPACE": "no-such-namespace"})
	u := createUpload(t, user(t), fileReq{"etag.pdf", pdf, 10})
	r := u.put(t, rep.url, 0, 1, withHeader("X-Correlation-ID", "odd-etag"))
	if r.status != 200 || r.str("etag") != `"W/odd-etag"` {
		t.Fatalf("= %d %s", r.status, r.raw)
	}
	if w := linesWhere(readLogs(t, rep.log), "level", "warn", "msg", "unexpected part ETag format from S3", "correlationId", "odd-etag"); len(w) != 1 {
		t.Fatal("no WARN line for the odd ETag")
	}
}
