package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
)

// s3Proxied starts a replica whose S3 traffic goes through a fault proxy.
func s3Proxied(t *testing.T, extra map[string]string) (replica, *faultproxy.Proxy) {
	t.Helper()
	fp := faultproxy.New()
	t.Cleanup(fp.Close)
	px, err := fp.Add("s3", stack.S3.Addr)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"S3_ENDPOINT": "http://" + px.Addr, "WATCH_NAMESPACE": "no-such-namespace"}
	for k, v := range extra {
		env[k] = v
	}
	return startReplica(t, env), px
}

// A transient S3 failure succeeds on attempt 2 or 3: the first one or two
// attempts are reset by the proxy; the SDK's retryer sends the part again
// without the client resending it; each failed attempt is a WARN line with the
// request's correlation id.
func TestS3TransientFailuresAreRetried(t *testing.T) {
	rep, px := s3Proxied(t, nil)
	acct := user(t)
	u := createUpload(t, acct, fileReq{"retry.pdf", pdf, 11 << 20})
	for _, resets := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d resets", resets), func(t *testing.T) {
			if err := px.ResetFirst(resets); err != nil {
				t.Fatal(err)
			}
			corr := fmt.Sprintf("s3-retry-%d", resets)
			r := u.put(t, rep.url, 0, resets, withHeader("X-Correlation-ID", corr))
			if r.status != 200 {
				t.Fatalf("part: %d %s", r.status, r.raw)
			}
			if got := px.Attempts(); got != int64(resets+1) {
				t.Fatalf("attempts that reached the proxy = %d, want %d (success on attempt %d)", got, resets+1, resets+1)
			}
			logs := readLogs(t, rep.log)
			warns := linesWhere(logs, "level", "warn", "correlationId", corr, "msg", "S3 transient error; the SDK will retry")
			if len(warns) != resets {
				t.Fatalf("WARN lines = %d, want %d", len(warns), resets)
			}
			if ok := linesWhere(logs, "level", "info", "correlationId", corr, "msg", "part uploaded"); len(ok) != 1 {
				t.Fatalf("no INFO part line for %s", corr)
			}
		})
	}
	_ = px.StopCounting()
}

// S3 failing every attempt → 503 S3_UNAVAILABLE,
// retryable, with Retry-After, after exactly 3 attempts, logged as ERROR.
// S3 refusing connections outright answers the same.
func TestS3DownAnswers503AfterThreeAttempts(t *testing.T) {
	rep, px := s3Proxied(t, nil)
	acct := user(t)
	u := createUpload(t, acct, fileReq{"down.pdf", pdf, 100})
	if err := px.ResetFirst(1000); err != nil {
		t.Fatal(err)
	}
	r := u.put(t, rep.url, 0, 1, withHeader("X-Correlation-ID", "s3-down"))
	if r.status != 503 || r.str("error") != "S3_UNAVAILABLE" || r.body["retryable"] != true || r.header.Get("Retry-After") == "" {
		t.Fatalf("= %d %s %v", r.status, r.raw, r.header)
	}
	if got := px.Attempts(); got != 3 {
		t.Fatalf("attempts = %d, want 3", got)
	}
	logs := readLogs(t, rep.log)
	if e := linesWhere(logs, "level", "error", "correlationId", "s3-down", "msg", "S3 retries exhausted"); len(e) != 1 {
		t.Fatalf("no ERROR line for the exhaustion")
	}
	_ = px.StopCounting()

	px.Disable()
	defer px.Enable()
	if r := u.put(t, rep.url, 0, 1); r.status != 503 || r.str("error") != "S3_UNAVAILABLE" {
		t.Fatalf("refused: %d %s", r.status, r.raw)
	}
}

// S3 that drops packets instead of refusing: the part timeout
// wins over the retries (408), and nothing is recorded.
func TestS3DroppingPacketsTimeoutWins(t *testing.T) {
	rep, px := s3Proxied(t, map[string]string{"UPLOAD_PART_TIMEOUT": "2s"})
	acct := user(t)
	u := createUpload(t, acct, fileReq{"drop.pdf", pdf, 100})
	if err := px.AddToxic("blackhole", "timeout", "upstream", `{"timeout":0}`); err != nil {
		t.Fatal(err)
	}
	_ = px.Cut()
	start := time.Now()
	r := u.put(t, rep.url, 0, 1)
	took := time.Since(start)
	_ = px.RemoveToxic("blackhole")
	if r.status != 408 || r.str("error") != "REQUEST_TIMEOUT" {
		t.Fatalf("= %d %s", r.status, r.raw)
	}
	if took < 1900*time.Millisecond || took > 6*time.Second {
		t.Errorf("answered after %s, want about the 2s timeout", took)
	}
	assertNoPart(t, u.files[0].id, 1)
}

// S3 down while finalize completes the uploads → 503, nothing
// committed, lock released; the same finalize succeeds once S3 is back.
func TestS3DownDuringFinalize(t *testing.T) {
	rep, px := s3Proxied(t, nil)
	acct := user(t)
	u := createUpload(t, acct, fileReq{"fin.pdf", pdf, 6 << 20})
	u.putAll(t, "")
	title := uniqueTitle("S3 Down Castle")
	px.Disable()
	r := u.finalize(t, rep.url, title)
	if r.status != 503 || r.str("error") != "S3_UNAVAILABLE" || r.header.Get("Retry-After") == "" {
		_ = px.Enable()
		t.Fatalf("= %d %s", r.status, r.raw)
	}
	var mocs, locked int
	must(t, db.QueryRow(context.Background(), `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, u.id).Scan(&mocs))
	must(t, db.QueryRow(context.Background(), `SELECT count(*) FROM upload_sessions WHERE id = $1 AND finalizing_at IS NOT NULL`, u.id).Scan(&locked))
	if mocs != 0 || locked != 0 {
		t.Fatalf("after the 503: %d MOCs, lock held=%d", mocs, locked)
	}
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	if r := u.finalize(t, rep.url, title); r.status != 201 {
		t.Fatalf("after S3 is back: %d %s", r.status, r.raw)
	}
}

func assertNoPart(t *testing.T, fileID string, n int) {
	t.Helper()
	var c int
	must(t, db.QueryRow(context.Background(), `SELECT count(*) FROM upload_parts WHERE file_id = $1 AND part_number = $2`, fileID, n).Scan(&c))
	if c != 0 {
		t.Fatalf("part %d of %s was recorded", n, fileID)
	}
}

// rawPart opens a connection and sends the headers of a part PUT, returning
// the connection for the test to trickle the body.
func rawPart(t *testing.T, base string, u *upload, file, n int, corr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-Correlation-ID: %s\r\nContent-Length: %d\r\n\r\n",
		u.partPath(file, n), u.token, corr, len(u.partBytes(file, n)))
	return c
}

func readResponse(t *testing.T, c net.Conn) (*http.Response, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	return resp, string(b)
}
