package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape reads a Prometheus text endpoint into name{labels} → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		i := strings.LastIndex(l, " ")
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err == nil {
			out[l[:i]] = v
		}
	}
	return out
}

// The metrics endpoint counts what a flow did: parts, bytes, the part
// duration histogram, finalize outcomes, sessions by phase; S3 retries and
// exhaustions and rate-limit refusals on replicas that saw them.
func TestMetricsAfterAFlow(t *testing.T) {
	before := scrape(t, metricsURL)
	u := finalized(t, user(t), uniqueTitle("Metric Castle"), fileReq{"m.pdf", pdf, 6 << 20})
	u.finalize(t, "", "again")
	after := scrape(t, metricsURL)
	delta := func(k string) float64 { return after[k] - before[k] }
	if d := delta("mocupload_parts_received_total"); d != 2 {
		t.Errorf("parts received +%v, want +2", d)
	}
	if d := delta("mocupload_part_bytes_received_total"); d != 6<<20 {
		t.Errorf("part bytes +%v, want +%d", d, 6<<20)
	}
	// Both parts were held in memory and gave it back.
	if after["mocupload_part_buffer_bytes_in_use"] != 0 || delta("mocupload_part_buffer_spills_total") != 0 {
		t.Errorf("part buffers: %v bytes in use, %v spills; want none", after["mocupload_part_buffer_bytes_in_use"],
			delta("mocupload_part_buffer_spills_total"))
	}
	if _, ok := after["mocupload_part_buffer_waits_total"]; !ok {
		t.Error("mocupload_part_buffer_waits_total not exported")
	}
	if d := delta(`mocupload_part_duration_seconds_count{result="ok"}`); d != 2 {
		t.Errorf("part duration count +%v", d)
	}
	if delta(`mocupload_finalize_total{result="created"}`) != 1 || delta(`mocupload_finalize_total{result="replayed"}`) != 1 {
		t.Errorf("finalize outcomes: %v created, %v replayed", delta(`mocupload_finalize_total{result="created"}`), delta(`mocupload_finalize_total{result="replayed"}`))
	}
	// This flow's session adds one to the Finalized count (e2e tests run one at
	// a time, and the manager watches only its own namespace).
	finalizedGauge := `mocupload_sessions{phase="Finalized"}`
	waitFor(t, 20*time.Second, "sessions gauge", func() (bool, string) {
		m := scrape(t, metricsURL)
		return m[finalizedGauge] >= before[finalizedGauge]+1, fmt.Sprint(before[finalizedGauge], " → ", m[finalizedGauge])
	})

	// S3 retries and exhaustions, on a replica behind the fault proxy.
	rep, px := s3Proxied(t, nil)
	if err := px.ResetFirst(4); err != nil { // 2 retries of a successful part... then 3 failed attempts
		t.Fatal(err)
	}
	defer px.StopCounting()
	v := createUpload(t, user(t), fileReq{"r.pdf", pdf, 100})
	v.put(t, rep.url, 0, 1) // attempts 1–3 reset: exhausted (503)
	v.put(t, rep.url, 0, 1) // attempt 1 reset, attempt 2 succeeds
	m := scrape(t, rep.metrics)
	if m[`mocupload_s3_retries_total{operation="UploadPart"}`] != 3 || m[`mocupload_s3_exhaustions_total{operation="UploadPart"}`] != 1 {
		t.Errorf("S3 retries %v, exhaustions %v; want 3 and 1", m[`mocupload_s3_retries_total{operation="UploadPart"}`],
			m[`mocupload_s3_exhaustions_total{operation="UploadPart"}`])
	}
}
