package e2e

import (
	"context"
	"fmt"
	"html"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromium finds the browser; CI installs it (.ci/run), so there a missing
// browser is a failure, elsewhere a skip that says how to get it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs it (apt-get install chromium)")
	}
	t.Skip("chromium not installed: apt-get install chromium (CI installs it)")
	return ""
}

// servePage serves one HTML page on a loopback port of its own: its origin.
func servePage(t *testing.T, page string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// runPage loads url in headless Chromium and returns the text of #out once
// the page's script has written it.
func runPage(t *testing.T, browser, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=20000", "--dump-dom", url)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?s)<pre id="out">(.*?)</pre>`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no #out in the page:\n%s", out)
	}
	return html.UnescapeString(string(m[1]))
}

const uploadPage = `<!doctype html><html><body><pre id="out">pending</pre><script>
const out = document.getElementById('out');
fetch(%q, {method: 'PUT', headers: {'Authorization': 'Bearer %s', 'Content-Type': 'application/octet-stream'},
           body: new Uint8Array(%d)})
  .then(r => r.text().then(b => { out.textContent = 'STATUS ' + r.status + ' ETAG ' + r.headers.get('ETag') + ' BODY ' + b; }))
  .catch(e => { out.textContent = 'BLOCKED ' + e; });
</script></body></html>`

// CORS in a real browser (the preflight answers 204 and the PUT follows
// successfully): a page from an allowed loopback
// origin PUTs a part with fetch(), the browser's preflight passes and the PUT
// succeeds, its ETag readable; the same page from a disallowed origin is
// blocked by the browser and nothing reaches the session.
func TestBrowserUploadsFromAllowedOriginOnly(t *testing.T) {
	browser := chromium(t)
	acct := user(t)
	// Reserve the allowed page's origin first: the operator must know it.
	allowedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	allowedOrigin := "http://" + allowedLn.Addr().String()
	rep := startReplica(t, map[string]string{"ALLOW_BROWSER_UPLOADS": "true", "ALLOWED_UPLOAD_ORIGINS": allowedOrigin,
		"WATCH_NAMESPACE": "no-such-namespace"})

	u := createUpload(t, acct, fileReq{"browser.png", png, 64}, fileReq{"blocked.png", png, 64})
	page := func(file int) string {
		return fmt.Sprintf(uploadPage, rep.url+u.partPath(file, 1), acct.token, 64)
	}

	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page(0))
	})}
	go srv.Serve(allowedLn)
	defer srv.Close()
	got := runPage(t, browser, allowedOrigin+"/")
	if !strings.HasPrefix(got, "STATUS 200 ETAG \"") || !strings.Contains(got, `"partNumber":1`) {
		t.Fatalf("allowed origin: %s", got)
	}

	blockedOrigin := servePage(t, page(1))
	got = runPage(t, browser, blockedOrigin+"/")
	if !strings.HasPrefix(got, "BLOCKED") {
		t.Fatalf("disallowed origin was not blocked: %s", got)
	}
	assertNoPart(t, u.files[1].id, 1)
	var n int
	must(t, db.QueryRow(context.Background(), `SELECT count(*) FROM upload_parts WHERE file_id = $1`, u.files[0].id).Scan(&n))
	if n != 1 {
		t.Fatalf("the allowed upload was not recorded")
	}
}
