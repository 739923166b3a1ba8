package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/auth"
)

// FuzzCORSOrigin: a preflight or a part answer carries
// Access-Control-Allow-Origin exactly when CORS is on and the Origin header is
// byte for byte one of the configured origins, and then it is that origin
// (never "*", never another list entry).
func FuzzCORSOrigin(f *testing.F) {
	for _, o := range []string{"http://localhost:3000", "http://localhost:3000/", "HTTP://LOCALHOST:3000", "http://localhost:30000",
		"null", "*", "", "http://localhost:3000, http://evil.example", " http://localhost:3000", "http://127.0.0.1:3000"} {
		f.Add(o, true)
	}
	origins := []string{"http://localhost:3000", "http://127.0.0.1:3000"}
	f.Fuzz(func(t *testing.T, origin string, enabled bool) {
		h := (&API{Log: logr.Discard(), CORS: CORS{Enabled: enabled, Origins: origins}}).Handler()
		listed := false
		for _, o := range origins {
			listed = listed || o == origin
		}
		for _, method := range []string{http.MethodOptions, http.MethodPut} {
			req := httptest.NewRequest(method, partPath, nil)
			if !validHeaderValue(origin) {
				return // net/http would refuse to send it
			}
			req.Header.Set("Origin", origin)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got, has := rec.Header()["Access-Control-Allow-Origin"]
			allow := enabled && listed && origin != ""
			switch {
			case allow && (len(got) != 1 || got[0] != origin):
				t.Fatalf("%s from listed origin %q: Access-Control-Allow-Origin %q", method, origin, got)
			case !allow && has:
				t.Fatalf("%s from %q (CORS on: %v): Access-Control-Allow-Origin %q", method, origin, enabled, got)
			}
		}
	})
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// FuzzJSONBodies: whatever body a caller posts to create a session or to
// finalize one, the API answers with a 2xx or a 4xx and a JSON error code;
// never a 5xx, never a panic. Sessions it creates are real (PostgreSQL and
// S3); only the resource store is an in-memory API (the admission rules and
// schema of the real API server are tested in test/e2e).
func FuzzJSONBodies(f *testing.F) {
	for _, b := range []string{
		`{"files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":100}]}`,
		`{"files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":100}],"partSizeBytes":5242880}`,
		`{"files":[{"name":"../a","contentType":"image/svg+xml","sizeBytes":-1}],"partSizeBytes":1e99}`,
		`{"uploadSessionId":"5f0c1a52-3c3a-4b8e-9d5e-0a4f4c2b7a10","title":"Castle","description":"d"}`,
		`{"uploadSessionId":"not-a-uuid","title":""}`,
		`{"files":null}`, `[]`, `null`, `{}`, `{"files":[{}]}`, `{"a":1}{"b":2}`, `{"files":"x"}`, "\x00", `{"title":"\ud800"}`,
	} {
		f.Add([]byte(b))
	}
	scheme := runtime.NewScheme()
	if err := uploadsv1.AddToScheme(scheme); err != nil {
		f.Fatal(err)
	}
	svc := testService(f, nil)
	api := &API{
		Log: logr.Discard(), Auth: &auth.Authenticator{Reviewer: tokenUsers{}, TTL: time.Minute},
		Uploads: svc, PartTimeout: 5 * time.Second, SessionNamespace: "default",
		Kube: fake.NewClientBuilder().WithScheme(scheme).Build(),
	}
	h := api.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/api/mocs/uploads/sessions", "/api/mocs/uploads/finalize"} {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer system:serviceaccount:fuzz:caller")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("POST %s %q = %d %s", path, body, rec.Code, rec.Body)
			}
			if rec.Code >= 400 {
				var e struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
					t.Fatalf("POST %s %q = %d with no JSON error code: %s", path, body, rec.Code, rec.Body)
				}
			}
		}
	})
}
