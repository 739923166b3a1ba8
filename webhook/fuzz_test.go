package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/session"
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

// fuzzAPI is the API the body fuzzers post to: the real engine (PostgreSQL,
// S3), an in-memory resource store.
func fuzzAPI(f *testing.F) http.Handler {
	f.Helper()
	scheme := runtime.NewScheme()
	if err := uploadsv1.AddToScheme(scheme); err != nil {
		f.Fatal(err)
	}
	return (&API{
		Log: logr.Discard(), Auth: &auth.Authenticator{Reviewer: tokenUsers{}, TTL: time.Minute},
		Uploads: testService(f, nil), PartTimeout: 5 * time.Second, SessionNamespace: "default",
		Kube: fake.NewClientBuilder().WithScheme(scheme).Build(),
	}).Handler()
}

// postSurvivingTransients posts body to path. A 5xx is a finding only if it
// happens again: a real service's transient hiccup (PostgreSQL or S3 under
// the fuzzer's load) must not be written into testdata/fuzz as a crasher,
// so such an input is skipped; a 5xx that repeats fails the input.
func postSurvivingTransients(t *testing.T, h http.Handler, path string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	post := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer system:serviceaccount:fuzz:caller")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	rec := post()
	if rec.Code < 500 {
		return rec
	}
	if again := post(); again.Code < 500 {
		t.Skipf("POST %s answered %d %s once, then %d: transient", path, rec.Code, rec.Body, again.Code)
	}
	t.Fatalf("POST %s %q = %d %s, twice", path, body, rec.Code, rec.Body)
	return nil
}

// FuzzValidCreateBodiesAreCreated: a create body generated valid (1–3 files
// of allowed types and sizes, names of safe characters, an optional part size
// that fits) is answered 201 with the session (a handler that refused
// everything would pass FuzzJSONBodies).
func FuzzValidCreateBodiesAreCreated(f *testing.F) {
	f.Add(uint8(1), uint32(100), uint8(0), "castle.pdf", uint8(0))
	f.Add(uint8(3), uint32(5<<20+1), uint8(7), "Große Burg (v2).ldr", uint8(5))
	h := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, nFiles uint8, size uint32, partMiB uint8, name string, typ uint8) {
		safe := strings.Map(func(r rune) rune {
			if unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(" ._-()", r) {
				return r
			}
			return -1
		}, name)
		if safe = strings.TrimSpace(safe); safe == "" || len(safe) > 100 {
			safe = "file.pdf"
		}
		var files []map[string]any
		for i := range int(nFiles%3) + 1 {
			files = append(files, map[string]any{
				"name": fmt.Sprintf("%d-%s", i, safe), "sizeBytes": int64(size%(64<<20)) + 1,
				"contentType": session.DefaultContentTypes[(int(typ)+i)%len(session.DefaultContentTypes)],
			})
		}
		req := map[string]any{"files": files}
		if partMiB > 0 {
			req["partSizeBytes"] = int64(5+int(partMiB)%60) << 20
		}
		body, _ := json.Marshal(req)
		rec := postSurvivingTransients(t, h, "/api/mocs/uploads/sessions", body)
		if rec.Code != http.StatusCreated {
			t.Fatalf("valid body %s = %d %s; want 201", body, rec.Code, rec.Body)
		}
	})
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
	h := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/api/mocs/uploads/sessions", "/api/mocs/uploads/finalize"} {
			rec := postSurvivingTransients(t, h, path, body)
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
