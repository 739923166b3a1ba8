package webhook

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/ratelimit"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

func createBody() []byte {
	return []byte(`{"files":[{"name":"a.exe","contentType":"application/x-msdownload","sizeBytes":1}]}`)
}

// Creating sessions is limited per user: a sliding window of creations (every
// request counts, like finalize) and a cap on sessions not yet finalized,
// expired or failed; both answer 429 RATE_LIMIT_EXCEEDED with retryAfter,
// limit and window (“active” for the cap). Admins are exempt from both. With
// an allow-list, only its groups may create sessions at all.
func TestSessionCreationIsLimitedPerUser(t *testing.T) {
	ctx := context.Background()
	rdb, err := ratelimit.NewClient("redis://127.0.0.1:6379/0")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	prefix := "mocupload:" + localenv.RandomName("quota") + ":"
	limiter := &ratelimit.Limiter{Redis: rdb, Prefix: prefix, Name: "create", Limit: 2, Window: time.Minute}
	svc := testService(t, nil)
	busy := "system:serviceaccount:quota:" + uuid.NewString()[:8]
	for range 3 {
		if _, err := svc.Activate(ctx, uploads.Request{SessionID: uuid.New(), Owner: busy,
			Files: []session.File{{Name: "a.pdf", ContentType: "application/pdf", SizeBytes: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	base := serveWith(t, func(a *API) {
		a.Uploads = svc
		a.CreateLimiter, a.CreateLimitCount, a.CreateLimitWindow = ratelimit.HTTP{Limiter: limiter}, 2, "1m"
		a.MaxActiveSessions = 3
		a.Auth.AdminGroups = []string{"admins"}
	})
	post := func(token string) answer {
		t.Helper()
		a, err := send(ctx, t, http.MethodPost, base+"/api/mocs/uploads/sessions", token, createBody())
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// The window: two creations a minute (these are 400s: every request counts).
	fresh := "system:serviceaccount:quota:" + uuid.NewString()[:8]
	for i := range 2 {
		if a := post(fresh); a.status != 400 {
			t.Fatalf("request %d: %d %v", i+1, a.status, a.body)
		}
	}
	a := post(fresh)
	if a.status != 429 || a.code() != "RATE_LIMIT_EXCEEDED" || a.body["limit"] != 2.0 || a.body["window"] != "1m" ||
		a.body["retryAfter"].(float64) < 1 || a.header.Get("Retry-After") == "" {
		t.Fatalf("third creation in a minute: %d %v", a.status, a.body)
	}
	// The cap: three unfinished sessions already.
	a = post(busy)
	if a.status != 429 || a.body["limit"] != 3.0 || a.body["window"] != "active" || a.header.Get("Retry-After") == "" {
		t.Fatalf("over the active-session cap: %d %v", a.status, a.body)
	}
	// Admins are exempt from both.
	for range 3 {
		if a := post(busy + "|admins"); a.status != 400 {
			t.Fatalf("admin: %d %v", a.status, a.body)
		}
	}
}

func TestUploadAllowList(t *testing.T) {
	base := serveWith(t, func(a *API) { a.UploadGroups = []string{"uploaders"}; a.Auth.AdminGroups = []string{"admins"} })
	for token, want := range map[string]int{"alice": 403, "bob|other": 403, "carol|uploaders": 400, "dave|admins": 400} {
		a, err := send(context.Background(), t, http.MethodPost, base+"/api/mocs/uploads/sessions", token, createBody())
		if err != nil {
			t.Fatal(err)
		}
		if a.status != want {
			t.Errorf("%s: %d %v, want %d", token, a.status, a.body, want)
		}
	}
}

// The allow-list holds for every step, not only creation: a caller outside
// UPLOAD_ALLOWED_GROUPS can neither send parts to, ask for part URLs of, nor
// finalize a session it opened before it lost its group.
func TestUploadAllowListHoldsForPartsAndFinalize(t *testing.T) {
	svc := testService(t, nil)
	base := serveWith(t, func(a *API) { a.Uploads = svc; a.UploadGroups = []string{"uploaders"} })
	s := newSession(t, svc, 5*session.MiB)
	member := s.owner + "|uploaders"
	outsider := s.owner
	for _, c := range []struct{ method, path string }{
		{http.MethodPut, s.partPath(1)},
		{http.MethodPost, s.partPath(1) + "/url"},
		{http.MethodPost, "/api/mocs/uploads/finalize"},
	} {
		body := s.part(1)
		if c.method == http.MethodPost {
			body = s.finalizeBody("Castle")
		}
		a, err := send(context.Background(), t, c.method, base+c.path, outsider, body)
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusForbidden || a.code() != "FORBIDDEN" {
			t.Fatalf("%s %s outside the groups: %d %v; want 403 FORBIDDEN", c.method, c.path, a.status, a.body)
		}
	}
	a, err := send(context.Background(), t, http.MethodPut, base+s.partPath(1), member, s.part(1))
	if err != nil || a.status != http.StatusOK {
		t.Fatalf("PUT as a member: %d %v %v", a.status, a.body, err)
	}
}

// A tenant's ServiceAccounts share one creation budget
// (SESSION_CREATE_RATE_LIMIT_PER_TENANT): 50 accounts of one namespace get
// one tenant's creations, not 50 users'; another namespace is not affected.
func TestSessionCreationIsLimitedPerTenant(t *testing.T) {
	ctx := context.Background()
	rdb, err := ratelimit.NewClient("redis://127.0.0.1:6379/0")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	limiter := &ratelimit.Limiter{Redis: rdb, Prefix: "mocupload:" + localenv.RandomName("tenant") + ":", Name: "create-tenant", Limit: 2, Window: time.Minute}
	base := serveWith(t, func(a *API) {
		a.TenantCreateLimiter, a.TenantCreateLimitCount, a.TenantCreateLimitWindow = ratelimit.HTTP{Limiter: limiter}, 2, "1m"
	})
	ns := "tenant-" + uuid.NewString()[:8]
	post := func(token string) answer {
		t.Helper()
		a, err := send(ctx, t, http.MethodPost, base+"/api/mocs/uploads/sessions", token, createBody())
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, sa := range []string{"bot-1", "bot-2"} {
		if a := post("system:serviceaccount:" + ns + ":" + sa); a.status == http.StatusTooManyRequests {
			t.Fatalf("%s's first creation: %d %v", sa, a.status, a.body)
		}
	}
	if a := post("system:serviceaccount:" + ns + ":bot-3"); a.status != http.StatusTooManyRequests || a.body["limit"] != float64(2) {
		t.Fatalf("a third account of the tenant: %d %v; want 429 with the tenant's limit", a.status, a.body)
	}
	if a := post("system:serviceaccount:other-" + ns + ":bot-1"); a.status == http.StatusTooManyRequests {
		t.Fatalf("another namespace: %d %v", a.status, a.body)
	}
}
