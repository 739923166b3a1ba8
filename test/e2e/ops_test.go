package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"
)

func probe(t *testing.T, url string) int {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// /readyz fails while the S3 bucket is unreachable (and comes back); /healthz
// stays up; Redis down only degrades (fail-open rate limit), so stays ready.
func TestProbes(t *testing.T) {
	rep, px := s3Proxied(t, nil)
	if probe(t, rep.probes+"/readyz") != 200 || probe(t, rep.probes+"/healthz") != 200 {
		t.Fatal("not ready at start")
	}
	px.Disable()
	waitFor(t, 10*time.Second, "readyz to fail with S3 down", func() (bool, string) {
		c := probe(t, rep.probes+"/readyz")
		return c != 200 && c != 0, fmt.Sprint(c)
	})
	if probe(t, rep.probes+"/healthz") != 200 {
		t.Error("healthz failed with S3 down")
	}
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "readyz back", func() (bool, string) { return probe(t, rep.probes+"/readyz") == 200, "" })

	noRedis := startReplica(t, map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "WATCH_NAMESPACE": "no-such-namespace"})
	if c := probe(t, noRedis.probes+"/readyz"); c != 200 {
		t.Errorf("readyz with Redis unreachable = %d, want 200 (degraded, not down)", c)
	}
}

// SIGTERM: the replica stops taking new requests (503 SHUTTING_DOWN with
// Retry-After), finishes the part in flight (recorded), and exits cleanly.
func TestGracefulShutdownFinishesPartsInFlight(t *testing.T) {
	rep, px := s3Proxied(t, map[string]string{"SHUTDOWN_GRACE": "20s"})
	if err := px.AddToxic("slow", "bandwidth", "upstream", `{"rate":4000}`); err != nil { // 4 MB/s: a 5 MiB part takes ~1.3 s
		t.Fatal(err)
	}
	u := createUpload(t, user(t), fileReq{"g.pdf", pdf, 10 << 20})
	inflight := sendAsync(func() (response, error) { return u.sendPart(rep.url, 0, 1) })
	// SIGTERM only once the part is being served (its body on its way to S3).
	waitFor(t, 10*time.Second, "the part to be in flight", func() (bool, string) {
		return scrape(t, rep.metrics)["mocupload_http_requests_in_flight"] >= 1, ""
	})
	if err := rep.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The replica turns unready as it starts draining…
	waitFor(t, 5*time.Second, "readyz to fail while draining", func() (bool, string) {
		c := probe(t, rep.probes+"/readyz")
		return c != 200 && c != 0, fmt.Sprint(c)
	})
	// …and a new request is refused while the part in flight goes on.
	nr := call(t, rep.url, "PUT", u.partPath(0, 2), u.token, bytes.NewReader(u.partBytes(0, 2)))
	if nr.status != 503 || nr.str("error") != "SHUTTING_DOWN" || nr.header.Get("Retry-After") == "" {
		t.Fatalf("new request while draining: %d %s", nr.status, nr.raw)
	}
	r := <-inflight
	if r.status != 200 {
		t.Fatalf("part in flight: %d %s", r.status, r.raw)
	}
	var n int
	must(t, db.QueryRow(t.Context(), `SELECT count(*) FROM upload_parts WHERE file_id = $1 AND part_number = 1`, u.files[0].id).Scan(&n))
	if n != 1 {
		t.Fatal("the part in flight was not recorded")
	}
	assertNoPart(t, u.files[0].id, 2)
	select {
	case <-rep.proc.Done():
		if code := rep.proc.Cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the replica did not exit after draining")
	}
}
