package webhook

import (
	"bufio"

	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

// serveWith runs an API of svc changed by opts on a test server.
func serveWith(t *testing.T, opts func(*API)) string {
	t.Helper()
	svc := testService(t, nil)
	api := &API{Log: logr.Discard(), Auth: &auth.Authenticator{Reviewer: tokenUsers{}, TTL: time.Minute},
		Uploads: svc, PartTimeout: 25 * time.Second}
	if opts != nil {
		opts(api)
	}
	srv := httptestServer(t, api.Handler())
	return srv
}

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	addr, err := localenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: addr, Handler: h, Log: logr.Discard(), ShutdownGrace: time.Second}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "http://" + addr
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// One request cannot make a replica do work (or hold memory) in proportion to
// an attacker's body: bodies are capped, the file count is checked before any
// work per file, and an answer lists at most 20 problems.
func TestCreateBodiesAreBounded(t *testing.T) {
	empties := "{\"files\":[" + strings.Repeat("{},", 350000) + "{}]}" // about 1 MiB
	many := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"files":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"name":"f%d.exe","contentType":"application/x-msdownload","sizeBytes":1}`, i)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	for _, tc := range []struct {
		name    string
		maxBody int64
		body    string
		status  int
		code    string
		details int
		last    string
	}{
		{"1 MiB of empty file entries", 0, empties, 413, "PAYLOAD_TOO_LARGE", 0, ""},
		{"the same let through the size limit: one problem", 2 << 20, empties, 400, "VALIDATION_ERROR", 1, "at most 100 files per session"},
		{"50 bad files: 19 problems and a count", 0, many(50), 400, "VALIDATION_ERROR", 20, "and 31 more problems"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := serveWith(t, func(a *API) { a.MaxJSONBody = tc.maxBody })
			a, err := send(context.Background(), t, http.MethodPost, base+"/api/mocs/uploads/sessions", "alice", []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if a.status != tc.status || a.code() != tc.code {
				t.Fatalf("= %d %v; want %d %s", a.status, a.body, tc.status, tc.code)
			}
			d, _ := a.body["details"].([]any)
			if len(d) != tc.details {
				t.Fatalf("%d details, want %d", len(d), tc.details)
			}
			if tc.last != "" && !strings.Contains(fmt.Sprint(d[len(d)-1]), tc.last) {
				t.Fatalf("last detail %v, want %q", d[len(d)-1], tc.last)
			}
		})
	}
}

// A JSON body that trickles is cut off at JSON_BODY_TIMEOUT (408), and
// request headers over 64 KiB are refused (431).
func TestSlowBodiesAndHugeHeadersAreRefused(t *testing.T) {
	base := serveWith(t, func(a *API) { a.JSONBodyTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/mocs/uploads/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\nContent-Length: 100\r\n\r\n{\"files\":")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a trickling body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("trickling body: %d, want 408", resp.StatusCode)
	}

	req, _ := http.NewRequest(http.MethodGet, base+"/api/mocs/uploads/sessions/x", nil)
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set("X-Padding", strings.Repeat("p", 70<<10))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("70 KiB of headers: %d, want 431", r.StatusCode)
	}
}

// Titles and descriptions with control characters are a 400, not a 500 from
// PostgreSQL; a title without ASCII letters or digits gets the slug "moc",
// and its conflicts follow the usual rule.
func TestFinalizeTitles(t *testing.T) {
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	finalizeAs := func(s *activeSession, title, desc string) answer {
		body := fmt.Sprintf(`{"uploadSessionId":%q,"title":%q,"description":%q}`, s.act.Session.ID, title, desc)
		a, err := send(context.Background(), t, http.MethodPost, base+"/api/mocs/uploads/finalize", s.owner, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	s := newSession(t, svc, 100)
	if a := s.putPart(t, base, 1); a.status != 200 {
		t.Fatalf("part: %d %v", a.status, a.body)
	}
	for _, bad := range []struct{ title, desc string }{
		{"Cas\x00tle", ""}, {"Castle\x1b[2J", ""}, {"Castle", "a\x00b"}, {strings.Repeat("t", 201), ""}, {"Castle", strings.Repeat("d", 2001)},
	} {
		if a := finalizeAs(s, bad.title, bad.desc); a.status != 400 || a.code() != "VALIDATION_ERROR" {
			t.Fatalf("title %q, description %.20q: %d %v; want 400 VALIDATION_ERROR", bad.title, bad.desc, a.status, a.body)
		}
	}
	if a := finalizeAs(s, "城堡", ""); a.status != 201 || a.body["slug"] != session.FallbackSlug {
		t.Fatalf("a title without ASCII letters: %d %v; want 201 with slug moc", a.status, a.body)
	}
	second := newSession(t, svc, 100)
	second.owner = s.owner
	if _, err := testDB.Pool.Exec(context.Background(), `UPDATE upload_sessions SET user_id = $2 WHERE id = $1`, second.act.Session.ID, s.owner); err != nil {
		t.Fatal(err)
	}
	if a := second.putPart(t, base, 1); a.status != 200 {
		t.Fatalf("part: %d %v", a.status, a.body)
	}
	a := finalizeAs(second, "!!!", "")
	if a.status != 409 || a.body["suggestedSlug"] != "moc-1" {
		t.Fatalf("second title without ASCII letters: %d %v; want 409 suggesting moc-1", a.status, a.body)
	}
	if a := finalizeAs(second, "!!! (1)", ""); a.status != 201 || a.body["slug"] != "moc-1" {
		t.Fatalf("the auto-append retry: %d %v; want slug moc-1", a.status, a.body)
	}
}
