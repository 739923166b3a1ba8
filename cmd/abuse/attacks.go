package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// attack is one of the attacker's moves; run keeps at it until ctx ends,
// recording every answer it gets.
type attack struct {
	name string
	run  func(ctx context.Context, t *tally)
}

// tally counts the answers an attacker got.
type tally struct {
	mu sync.Mutex
	// byStatus counts answers by status ("transport" for a connection the
	// server cut, "cut" for a slow request cut before its answer).
	byStatus map[string]int
	// noRetryAfter counts 429 and 503 answers without Retry-After.
	noRetryAfter int
	// served counts 2xx answers: work the attacker got done.
	served int
}

func newTally() *tally { return &tally{byStatus: map[string]int{}} }

func (t *tally) add(a answer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case a.err != nil:
		t.byStatus["transport"]++
		return
	case a.status < 300:
		t.served++
	case (a.status == http.StatusTooManyRequests || a.status == http.StatusServiceUnavailable) && a.retryAfter == "":
		t.noRetryAfter++
	}
	t.byStatus[fmt.Sprint(a.status)]++
}

// manifestAttack is the index of the manifest flood in attacks().
const manifestAttack = 5

func (e *env) attacks() []attack {
	return []attack{
		{"(a) slow part bodies", e.slowBodies},
		{"(b) create/finalize flood, 50 accounts", e.createFlood},
		{"(c) garbage tokens", e.garbageTokens},
		{"(d) GET flood, direct session of 100 files", e.getFlood},
		{"(e) finalize of 100 empty files, read slowly", e.slowFinalize},
		{"(f) 1,000 large direct sessions as manifests", e.manifestFlood},
	}
}

// forEach runs job in n goroutines, each as attacker account i, until ctx ends.
func forEach(ctx context.Context, n int, job func(ctx context.Context, i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				job(ctx, i)
			}
		})
	}
	wg.Wait()
}

// slowBodies: 5 accounts, 8 connections each (their in-flight limit), PUTs
// declaring 64 MiB that send a byte a second.
func (e *env) slowBodies(ctx context.Context, t *tally) {
	sessions := make([]*session, slowAccounts)
	for i := range sessions {
		c := clientFrom(attackerAddr(firstSlow + i))
		s, a := create(ctx, c, e.api, e.attackers[firstSlow+i].token, "proxy", 64<<20, 8*(64<<20))
		if s == nil {
			t.add(a)
			return
		}
		sessions[i] = s
	}
	forEach(ctx, 8*slowAccounts, func(ctx context.Context, k int) {
		i := k % slowAccounts
		s := sessions[i]
		pr, pw := io.Pipe()
		go func() {
			defer pw.Close()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					if _, err := pw.Write([]byte{0}); err != nil {
						return
					}
				}
			}
		}()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, s.partPath(e.api, 0, 1+k/5), pr)
		req.ContentLength = 64 << 20
		req.Header.Set("Authorization", "Bearer "+e.attackers[firstSlow+i].token)
		resp, err := clientFrom(attackerAddr(firstSlow + i)).Do(req)
		_ = pr.CloseWithError(io.EOF)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			t.add(answer{err: err})
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		t.add(answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")})
	})
}

// createFlood: 50 accounts create small sessions and finalize them at once,
// as fast as they are answered.
func (e *env) createFlood(ctx context.Context, t *tally) {
	forEach(ctx, floodAccounts, func(ctx context.Context, i int) {
		c := clientFrom(attackerAddr(i))
		s, a := create(ctx, c, e.api, e.attackers[i].token, "proxy", 0, 100)
		if ctx.Err() != nil {
			return
		}
		t.add(a)
		if s == nil {
			return
		}
		a = call(ctx, c, http.MethodPost, e.api+"/api/mocs/uploads/finalize", e.attackers[i].token,
			map[string]any{"uploadSessionId": s.id, "title": "Flood " + s.id[:8]})
		if ctx.Err() == nil {
			t.add(a)
		}
	})
}

// garbageTokens: 4 connections from one address send JWT-shaped garbage.
func (e *env) garbageTokens(ctx context.Context, t *tally) {
	c := clientFrom(attackerAddr(200))
	enc := base64.RawURLEncoding.EncodeToString
	forEach(ctx, 4, func(ctx context.Context, _ int) {
		sub := make([]byte, 12)
		_, _ = rand.Read(sub)
		tok := enc([]byte(`{"alg":"RS256","kid":"x"}`)) + "." + enc([]byte(fmt.Sprintf(`{"sub":%q,"aud":"uploads.mocs.dev"}`, enc(sub)))) + "." + enc(sub)
		a := call(ctx, c, http.MethodGet, e.api+"/api/mocs/uploads/sessions/00000000-0000-4000-8000-000000000000", tok, nil)
		if ctx.Err() == nil {
			t.add(a)
		}
	})
}

// getFlood: one account GETs its direct session of 100 files with 16
// connections.
func (e *env) getFlood(ctx context.Context, t *tally) {
	c := clientFrom(attackerAddr(getAccount))
	sizes := make([]int64, 100)
	for i := range sizes {
		sizes[i] = 64 << 20
	}
	tok := e.attackers[getAccount].token
	s, a := create(ctx, c, e.api, tok, "direct", 0, sizes...)
	if s == nil {
		t.add(a)
		return
	}
	forEach(ctx, 16, func(ctx context.Context, _ int) {
		a := call(ctx, c, http.MethodGet, e.api+"/api/mocs/uploads/sessions/"+s.id, tok, nil)
		if ctx.Err() == nil {
			t.add(a)
		}
	})
}

// slowFinalize: one account finalizes a session of 100 files of 1,024
// parts each with nothing sent, and reads the answer a byte a second.
func (e *env) slowFinalize(ctx context.Context, t *tally) {
	c := clientFrom(attackerAddr(finalizeAccount))
	sizes := make([]int64, 100)
	for i := range sizes {
		sizes[i] = 1024 * (5 << 20)
	}
	s, a := create(ctx, c, e.api, e.attackers[finalizeAccount].token, "proxy", 5<<20, sizes...)
	if s == nil {
		t.add(a)
		return
	}
	forEach(ctx, 4, func(ctx context.Context, _ int) {
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackerAddr(finalizeAccount))}}).DialContext(ctx, "tcp", e.api[len("http://"):])
		if err != nil {
			return
		}
		defer conn.Close()
		body := fmt.Sprintf(`{"uploadSessionId":%q,"title":"Slow reader"}`, s.id)
		fmt.Fprintf(conn, "POST /api/mocs/uploads/finalize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			e.attackers[finalizeAccount].token, len(body), body)
		buf := make([]byte, 1)
		status := ""
		for ctx.Err() == nil {
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, err := conn.Read(buf)
			if n > 0 && len(status) < 12 {
				status += string(buf[:n])
			}
			if err != nil {
				break
			}
			time.Sleep(time.Second)
		}
		if ctx.Err() != nil {
			return
		}
		var code int
		if _, err := fmt.Sscanf(status, "HTTP/1.1 %d", &code); err == nil {
			t.add(answer{status: code, retryAfter: "-"})
		} else {
			t.add(answer{err: fmt.Errorf("cut")})
		}
	})
}

// manifestFlood: the attacker applies 1,000 manifests of large direct
// sessions (as its own account, the owner), 16 at a time.
func (e *env) manifestFlood(ctx context.Context, t *tally) {
	n := 1000
	if *quick {
		n = 200
	}
	var next sync.Mutex
	made := 0
	forEach(ctx, 16, func(ctx context.Context, _ int) {
		next.Lock()
		i := made
		made++
		next.Unlock()
		if i >= n {
			<-ctx.Done()
			return
		}
		us := &uploadsv1.UploadSession{
			ObjectMeta: metav1.ObjectMeta{Namespace: attackerNS, Name: fmt.Sprintf("big-%s-%04d", time.Now().Format("150405"), i)},
			Spec: uploadsv1.UploadSessionSpec{Owner: e.attackers[manifestAccount].name, Transfer: "direct",
				Files: []uploadsv1.FileSpec{{Name: "huge.pdf", ContentType: "application/pdf", SizeBytes: 5 << 30}}},
		}
		if err := e.k8s.Create(ctx, us); err != nil {
			if ctx.Err() == nil {
				t.add(answer{err: err})
			}
			return
		}
		t.add(answer{status: http.StatusCreated})
	})
}
