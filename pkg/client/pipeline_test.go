package client

import (
	"context"
	"crypto/rand"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// With Concurrency 1 the next part starts sending while the server is still
// answering the previous one (the turn is given back at the body's last
// byte), but no third one; every part's request speaks
// HTTP/1.1, even to a server offering HTTP/2 over TLS.
func TestUploadSendsTheNextPartWhileTheLastOneIsAnswered(t *testing.T) {
	t.Parallel()
	const partSize, parts = 64 << 10, 6
	file := filepath.Join(t.TempDir(), "f.pdf")
	data := make([]byte, partSize*parts)
	_, _ = rand.Read(data)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sess := Session{SessionID: "s1", PartSizeBytes: partSize, Files: []File{{FileID: "a", Name: "f.pdf", SizeBytes: partSize * parts, PartCount: parts}}}
	var (
		mu                      sync.Mutex
		receiving, maxReceiving int // requests of parts arrived and not yet answered
		overlapped              int // answers held back until the next part's request arrived
		protos                  = map[string]int{}
		arrivals                int
		nextArrival             = make(chan struct{}) // closed at each part's arrival
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.Proto]++
		mu.Unlock()
		if r.Method == http.MethodGet {
			writeJSON(w, http.StatusOK, sess)
			return
		}
		mu.Lock()
		arrivals++
		close(nextArrival)
		nextArrival = make(chan struct{})
		next := nextArrival
		receiving++
		maxReceiving = max(maxReceiving, receiving)
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		// Hold the answer until the next part's request is here; the last
		// part has none to wait for.
		select {
		case <-next:
			mu.Lock()
			overlapped++
			mu.Unlock()
		case <-time.After(500 * time.Millisecond):
		}
		mu.Lock()
		receiving--
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	c := New(srv.URL, StaticToken("tok"))
	if err := c.UseCAFile(ca); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.HTTP.CloseIdleConnections)
	c.Concurrency = 1
	if sent, err := c.Upload(context.Background(), "s1", []string{file}); err != nil || sent != parts {
		t.Fatalf("sent %d, %v; want %d parts", sent, err, parts)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxReceiving != 2 {
		t.Errorf("%d parts' requests were open at once with Concurrency 1, want 2 (one answered, one sending)", maxReceiving)
	}
	if overlapped != parts-1 {
		t.Errorf("the next part arrived before the answer to the previous one %d times, want %d", overlapped, parts-1)
	}
	if protos["HTTP/1.1"] != parts+1 || len(protos) != 1 {
		t.Errorf("protocols of the requests: %v, want HTTP/1.1 for all %d", protos, parts+1)
	}
}
