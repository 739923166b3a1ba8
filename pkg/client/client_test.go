package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mocs-dev/upload-operator/internal/testenv"
)

// These tests pin the client's own behaviour (which parts it sends, how it
// retries, how it polls and retitles) against a scripted server; the client
// against the real API is tested end to end in test/e2e.

func TestMain(m *testing.M) { testenv.Main(m, testenv.Needs{}, nil) }

func newClient(t *testing.T, h http.Handler) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := New(srv.URL, StaticToken("tok"))
	c.BaseBackoff = time.Millisecond
	t.Cleanup(c.HTTP.CloseIdleConnections)
	return c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Retryable answers (503, 429, 408) are retried up to MaxRetries times, each
// attempt with the whole body again; others are returned at once.
func TestRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		failures  int
		status    int
		code      string
		wantCalls int32
		wantErr   bool
	}{
		{"two 503 then success", 2, http.StatusServiceUnavailable, "S3_UNAVAILABLE", 3, false},
		{"429 then success", 1, http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED", 2, false},
		{"503 past the retries", 10, http.StatusServiceUnavailable, "S3_UNAVAILABLE", 4, true},
		{"400 is not retried", 10, http.StatusBadRequest, "VALIDATION_ERROR", 1, true},
		{"404 is not retried", 10, http.StatusNotFound, "SESSION_NOT_FOUND", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if !bytes.Contains(body, []byte(`"castle.pdf"`)) || r.Header.Get("Authorization") != "Bearer tok" {
					t.Errorf("attempt %d: body %q, auth %q", calls.Load()+1, body, r.Header.Get("Authorization"))
				}
				if int(calls.Add(1)) <= tc.failures {
					writeJSON(w, tc.status, map[string]any{"error": tc.code})
					return
				}
				writeJSON(w, http.StatusCreated, Session{SessionID: "s1", PartSizeBytes: 5 << 20})
			}))
			s, err := c.CreateSession(context.Background(), []FileSpec{{Name: "castle.pdf", ContentType: "application/pdf", SizeBytes: 1}}, 0)
			if calls.Load() != tc.wantCalls {
				t.Errorf("%d requests, want %d", calls.Load(), tc.wantCalls)
			}
			switch {
			case tc.wantErr && !IsCode(err, tc.code):
				t.Fatalf("err = %v, want code %s", err, tc.code)
			case !tc.wantErr && (err != nil || s.SessionID != "s1"):
				t.Fatalf("= %+v, %v", s, err)
			}
		})
	}
}

// A Retry-After longer than the backoff is honoured.
func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	var first time.Time
	var gap time.Duration
	var calls atomic.Int32
	c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "SERVER_BUSY"})
			return
		}
		gap = time.Since(first)
		writeJSON(w, http.StatusOK, Session{SessionID: "s1"})
	}))
	if _, err := c.GetSession(context.Background(), "s1"); err != nil {
		t.Fatal(err)
	}
	if gap < time.Second {
		t.Fatalf("retried after %s; Retry-After said 1s", gap)
	}
}

// Upload sends exactly the parts the server lacks, each the right slice of
// its file (distinct bytes, so a mix-up would show), and skips the others.
func TestUploadSendsTheMissingPartsWithTheirBytes(t *testing.T) {
	t.Parallel()
	const partSize = 1000
	dir := t.TempDir()
	contents := [][]byte{make([]byte, 2500), make([]byte, 1000)}
	paths := make([]string, len(contents))
	for i, b := range contents {
		_, _ = rand.Read(b)
		paths[i] = filepath.Join(dir, fmt.Sprintf("f%d.pdf", i))
		if err := os.WriteFile(paths[i], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sess := Session{SessionID: "s1", PartSizeBytes: partSize, Files: []File{
		{FileID: "a", Name: "f0.pdf", SizeBytes: 2500, PartCount: 3, Parts: []Part{{PartNumber: 2, SizeBytes: partSize}}},
		{FileID: "b", Name: "f1.pdf", SizeBytes: 1000, PartCount: 1},
	}}
	var mu sync.Mutex
	got := map[string][]byte{}
	c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			writeJSON(w, http.StatusOK, sess)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		got[strings.TrimPrefix(r.URL.Path, "/api/mocs/uploads/sessions/s1/files/")] = b
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	sent, err := c.Upload(context.Background(), "s1", paths)
	if err != nil || sent != 3 {
		t.Fatalf("sent %d, %v; want 3 parts", sent, err)
	}
	want := map[string][]byte{
		"a/parts/1": contents[0][:1000], "a/parts/3": contents[0][2000:], "b/parts/1": contents[1],
	}
	if len(got) != len(want) {
		t.Fatalf("parts sent: %d, want %d", len(got), len(want))
	}
	for k, w := range want {
		if !bytes.Equal(got[k], w) {
			t.Errorf("%s: %d bytes that differ from the file's slice of %d", k, len(got[k]), len(w))
		}
	}
}

// While another finalize holds the lock, Finalize polls at the server's pace
// (retryAfter, kept within 1–5 s) and returns the MOC once it is there.
func TestFinalizeWaitsForAFinalizeInProgress(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var first time.Time
	c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			first = time.Now()
			writeJSON(w, http.StatusConflict, map[string]any{"error": "FINALIZE_IN_PROGRESS", "retryAfter": 0.2})
			return
		}
		if since := time.Since(first); since < time.Second {
			t.Errorf("polled again after %s; the floor is 1s", since)
		}
		writeJSON(w, http.StatusOK, map[string]any{"mocId": "m1", "slug": "castle"})
	}))
	moc, err := c.Finalize(context.Background(), "s1", "Castle", "", FollowServer)
	if err != nil || moc.MocID != "m1" || moc.Created {
		t.Fatalf("= %+v, %v; want the replayed MOC m1", moc, err)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d requests, want 2", calls.Load())
	}
}

// On a slug conflict the client retitles as the server suggests when told to
// auto-append, and returns the conflict otherwise.
func TestFinalizeSlugConflict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		policy    SlugPolicy
		strategy  string
		wantTitle string // the title of the second request; "" when there is none
	}{
		{"server says auto-append", FollowServer, "AUTO_APPEND", "Castle (2)"},
		{"server says prompt", FollowServer, "PROMPT_USER", ""},
		{"caller always appends", AutoAppend, "PROMPT_USER", "Castle (2)"},
		{"caller wants the conflict", ReturnConflict, "AUTO_APPEND", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var titles []string
			var mu sync.Mutex
			c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var body struct{ Title string }
				_ = json.NewDecoder(r.Body).Decode(&body)
				mu.Lock()
				titles = append(titles, body.Title)
				n := len(titles)
				mu.Unlock()
				if n == 1 {
					writeJSON(w, http.StatusConflict, map[string]any{"error": "SLUG_CONFLICT", "suggestedSlug": "castle-2", "retryStrategy": tc.strategy})
					return
				}
				writeJSON(w, http.StatusCreated, map[string]any{"mocId": "m2", "slug": "castle-2", "title": body.Title})
			}))
			moc, err := c.Finalize(context.Background(), "s1", "Castle", "", tc.policy)
			if tc.wantTitle == "" {
				if !IsCode(err, "SLUG_CONFLICT") || len(titles) != 1 {
					t.Fatalf("= %+v, %v after %d requests; want the conflict after 1", moc, err, len(titles))
				}
				return
			}
			if err != nil || !moc.Created || len(titles) != 2 || titles[1] != tc.wantTitle {
				t.Fatalf("= %+v, %v; titles sent %q, want second %q", moc, err, titles, tc.wantTitle)
			}
		})
	}
}

// An answer that comes before the body is all sent (a replica refusing a
// part at once, or going away) ends the attempt while the transport may
// still be reading the body in its own goroutine. The retry must not rewind
// the shared reader under it: each attempt reads through a fence the attempt
// closes when it ends. (Under -race, a shared reader is a data race here.)
func TestARetryDoesNotRewindABodyStillBeingSent(t *testing.T) {
	t.Parallel()
	const size = 8 << 20
	var calls atomic.Int32
	c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			// Refused before reading a byte: the client is still sending.
			w.Header().Set("Connection", "close")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "S3_UNAVAILABLE"})
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		if n != size {
			t.Errorf("attempt %d: %d bytes, want %d", calls.Load(), n, size)
		}
		writeJSON(w, http.StatusOK, map[string]any{"partNumber": 1})
	}))
	body := io.NewSectionReader(bytes.NewReader(make([]byte, size)), 0, size)
	for range 5 {
		calls.Store(0)
		if err := c.sendPart(context.Background(), "proxy", "/p", body, size, false, nil); err != nil {
			t.Fatal(err)
		}
		if calls.Load() != 2 {
			t.Fatalf("%d requests, want 2", calls.Load())
		}
	}
}
