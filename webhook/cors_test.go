package webhook

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

const partPath = "/api/mocs/uploads/sessions/5f0c1a52-3c3a-4b8e-9d5e-0a4f4c2b7a10/files/8d7e6f5a-1b2c-4d3e-8f9a-0b1c2d3e4f5a/parts/1"

// The preflight of an allowed origin answers 204 with the
// full method and header lists, the origin itself (never "*"), Vary: Origin
// and a one-day max age; other origins, or CORS disabled, get no
// Access-Control-Allow-* header.
func TestPreflightAnswersAllowedOriginsOnly(t *testing.T) {
	t.Parallel()
	enabled := CORS{Enabled: true, Origins: []string{"http://localhost:3000", "http://127.0.0.1:3000"}}
	cases := []struct {
		name       string
		cors       CORS
		origin     string
		reqHeaders string
		status     int
		allowed    bool
	}{
		{"allowed origin", enabled, "http://localhost:3000", "authorization,content-type", 204, true},
		{"allowed origin, no headers requested", enabled, "http://127.0.0.1:3000", "", 204, true},
		{"other origin", enabled, "http://evil.example", "authorization", 403, false},
		{"origin differing by port", enabled, "http://localhost:3001", "", 403, false},
		{"no origin", enabled, "", "", 403, false},
		{"disabled", CORS{Enabled: false, Origins: enabled.Origins}, "http://localhost:3000", "authorization", 403, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := (&API{Log: logr.Discard(), CORS: tc.cors}).Handler()
			req := httptest.NewRequest(http.MethodOptions, partPath, nil)
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			req.Header.Set("Access-Control-Request-Method", "PUT")
			if tc.reqHeaders != "" {
				req.Header.Set("Access-Control-Request-Headers", tc.reqHeaders)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			if !strings.Contains(strings.Join(res.Header.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary = %v, want Origin", res.Header.Values("Vary"))
			}
			if !tc.allowed {
				for k := range res.Header {
					if strings.HasPrefix(k, "Access-Control-Allow-") {
						t.Errorf("refused origin got %s", k)
					}
				}
				return
			}
			want := map[string]string{
				"Access-Control-Allow-Origin":  tc.origin,
				"Access-Control-Allow-Methods": "PUT, OPTIONS",
				"Access-Control-Max-Age":       "86400",
			}
			for k, v := range want {
				if got := res.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			ah := res.Header.Get("Access-Control-Allow-Headers")
			if !strings.HasPrefix(ah, "Content-Type, Authorization") || !strings.Contains(ah, "Content-MD5") {
				t.Errorf("Access-Control-Allow-Headers = %q, want the full list", ah)
			}
		})
	}
}

// The PUT's response (an error here: no token) exposes ETag and
// X-Correlation-ID to an allowed origin, and nothing to another.
func TestCORSOnThePut(t *testing.T) {
	t.Parallel()
	h := (&API{Log: logr.Discard(), CORS: CORS{Enabled: true, Origins: []string{"http://localhost:3000"}}}).Handler()
	for origin, allowed := range map[string]bool{"http://localhost:3000": true, "http://evil.example": false} {
		req := httptest.NewRequest(http.MethodPut, partPath, strings.NewReader("x"))
		req.Header.Set("Origin", origin)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		if res.StatusCode != 401 {
			t.Fatalf("status %d", res.StatusCode)
		}
		got := res.Header.Get("Access-Control-Allow-Origin")
		if allowed && (got != origin || res.Header.Get("Access-Control-Expose-Headers") != "ETag, X-Correlation-ID") {
			t.Errorf("%s: ACAO %q, expose %q", origin, got, res.Header.Get("Access-Control-Expose-Headers"))
		}
		if !allowed && got != "" {
			t.Errorf("%s got ACAO %q", origin, got)
		}
	}
}
