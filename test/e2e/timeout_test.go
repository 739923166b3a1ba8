package e2e

import (
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"
)

// A client trickling its part past UPLOAD_PART_TIMEOUT gets 408
// REQUEST_TIMEOUT with elapsedMs and timeoutAt, and no half part is recorded.
func TestTricklingPartBodyTimesOutWith408(t *testing.T) {
	rep := startReplica(t, map[string]string{"UPLOAD_PART_TIMEOUT": "1s", "WATCH_NAMESPACE": "no-such-namespace"})
	u := createUpload(t, user(t), fileReq{"slow.pdf", pdf, 6 << 20})
	c := rawPart(t, rep.url, u, 0, 1, "trickle")
	sent := time.Now()
	done := make(chan struct{})
	go func() { // 1 KiB every 100 ms: ~10 KiB/s for a 5 MiB part
		defer close(done)
		body := u.partBytes(0, 1)
		for i := 0; i < len(body); i += 1024 {
			if _, err := c.Write(body[i : i+1024]); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	resp, body := readResponse(t, c) //nolint:bodyclose // readResponse reads and closes it
	c.Close()
	<-done
	if resp.StatusCode != 408 {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	var b struct {
		Error     string `json:"error"`
		ElapsedMs int64  `json:"elapsedMs"`
		TimeoutAt string `json:"timeoutAt"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil || b.Error != "REQUEST_TIMEOUT" {
		t.Fatalf("body %s", body)
	}
	if b.ElapsedMs < 1000 || b.ElapsedMs > 5000 {
		t.Errorf("elapsedMs = %d, want just over 1000", b.ElapsedMs)
	}
	at, err := time.Parse("2006-01-02T15:04:05.000Z07:00", b.TimeoutAt)
	if err != nil || at.Sub(sent) > 2*time.Second || sent.Sub(at) > time.Second {
		t.Errorf("timeoutAt = %q (%v), want about 1s after the request", b.TimeoutAt, err)
	}
	if resp.Header.Get("X-Correlation-ID") != "trickle" {
		t.Errorf("correlation id %q", resp.Header.Get("X-Correlation-ID"))
	}
	assertNoPart(t, u.files[0].id, 1)
}

// Edge case "timeout race": a part that completes just before the
// cutoff is 200 and recorded.
func TestTimeoutRaceCompletesJustBeforeCutoff(t *testing.T) {
	// 4 s of pauses in an 8 s budget: close enough to the cutoff to show the
	// budget covers the whole body, far enough that a busy machine (or the
	// race detector) cannot push the part past it.
	rep := startReplica(t, map[string]string{"UPLOAD_PART_TIMEOUT": "8s", "WATCH_NAMESPACE": "no-such-namespace"})
	u := createUpload(t, user(t), fileReq{"race.pdf", pdf, 6 << 20})
	c := rawPart(t, rep.url, u, 0, 1, "to-race")
	body := u.partBytes(0, 1)
	chunk := len(body) / 10
	for i := 0; i < len(body); i += chunk {
		if _, err := c.Write(body[i:min(i+chunk, len(body))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
	}
	resp, b := readResponse(t, c) //nolint:bodyclose // readResponse reads and closes it
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	var n int
	must(t, db.QueryRow(t.Context(), `SELECT count(*) FROM upload_parts WHERE file_id = $1 AND part_number = 1`, u.files[0].id).Scan(&n))
	if n != 1 {
		t.Fatal("the part was not recorded")
	}
}

// The server's header timeout stops slowloris connections that never
// finish their headers.
func TestSlowlorisHeadersAreCut(t *testing.T) {
	rep := startReplica(t, map[string]string{"HTTP_READ_HEADER_TIMEOUT": "1s", "WATCH_NAMESPACE": "no-such-namespace"})
	c, err := net.Dial("tcp", rep.url[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n"))
	closed := make(chan time.Duration, 1)
	go func() {
		_, _ = io.Copy(io.Discard, c) // returns when the server closes
		closed <- time.Since(start)
	}()
	for i := 0; i < 40; i++ { // one header byte every 100 ms, never the blank line
		select {
		case took := <-closed:
			if took > 3*time.Second {
				t.Fatalf("closed after %s, want about 1s", took)
			}
			return
		default:
		}
		_, _ = c.Write([]byte("X"))
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the server kept a slowloris connection open for 4s")
}
