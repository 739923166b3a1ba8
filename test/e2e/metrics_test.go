package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scrape reads the operator's metrics (HTTPS, as a scraper allowed to get
// /metrics) into name{labels} → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	// The HTTPS metrics server comes up a moment after the upload API (it
	// makes its certificate first): wait for it to listen.
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err = scrapeAs(t, url, scraper(t).token); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
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
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// scrapeAs GETs a metrics URL with token ("" for none). The endpoint's
// certificate is self-signed.
func scrapeAs(t *testing.T, url, token string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the test endpoint's self-signed certificate
	return c.Do(req)
}

var (
	scraperOnce sync.Once
	scraperAcct account
)

// scraper is a ServiceAccount bound to config/rbac's metrics-reader role, as
// Prometheus's would be.
func scraper(t *testing.T) account {
	t.Helper()
	scraperOnce.Do(func() {
		ctx := context.Background()
		scraperAcct = serviceAccountFor(t, "monitoring", "prometheus", "") // a plain token, as Prometheus mounts
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "e2e-metrics-reader"},
			Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
		if err := k8s.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "e2e-metrics-reader"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "monitoring", Name: "prometheus"}}}
		if err := k8s.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	})
	return scraperAcct
}

// The metrics endpoint is HTTPS and answers only callers the API server
// authenticates and allows to get /metrics.
func TestMetricsNeedATokenThatMayReadThem(t *testing.T) {
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a token the API server refuses", "e30.e30.e30", http.StatusUnauthorized},
		{"a user without the metrics-reader role", serviceAccountFor(t, "default", "dev-user", "").token, http.StatusForbidden},
		{"a scraper with the role", scraper(t).token, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := scrapeAs(t, metricsURL, tc.token)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("= %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if resp, err := http.Get(strings.Replace(metricsURL, "https://", "http://", 1)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("metrics answered over plain HTTP")
		}
	}
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
	if d := delta("mocupload_part_received_bytes_total"); d != 6<<20 {
		t.Errorf("part bytes +%v, want +%d", d, 6<<20)
	}
	// Both parts were held in memory and gave it back.
	if after["mocupload_part_buffer_in_use_bytes"] != 0 || delta("mocupload_part_buffer_spills_total") != 0 {
		t.Errorf("part buffers: %v bytes in use, %v spills; want none", after["mocupload_part_buffer_in_use_bytes"],
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
	// The sessions gauge counts the sessions of the namespace a replica
	// watches: in a namespace of its own, one session finalized and one still
	// active count exactly one each.
	ns := namespace(t, "metrics")
	counter := startReplica(t, map[string]string{"WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns})
	deleteSessionsAtEnd(t, ns)
	done := createUploadAt(t, counter.url, user(t), fileReq{"g.pdf", pdf, 100})
	done.putAll(t, counter.url)
	if r := done.finalize(t, counter.url, uniqueTitle("Gauge Castle")); r.status != 201 {
		t.Fatalf("finalize: %d %s", r.status, r.raw)
	}
	createUploadAt(t, counter.url, user(t), fileReq{"h.pdf", pdf, 100})
	waitFor(t, 20*time.Second, "sessions gauge", func() (bool, string) {
		m := scrape(t, counter.metrics)
		fin, act := m[`mocupload_sessions{phase="Finalized"}`], m[`mocupload_sessions{phase="Active"}`]
		return fin == 1 && act == 1, fmt.Sprintf("Finalized %v, Active %v", fin, act)
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
