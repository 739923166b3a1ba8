package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"
)

// partSize is the victim's part size; it sends 4 at a time (3 through the
// operator, 1 straight to S3 with a part URL).
const (
	partSize   = 16 << 20
	victimFile = 64 * partSize
)

// victim is the well-behaved tenant: it sends parts of two big sessions again
// and again (a part is a register: each 200 replaces it), so its load is the
// same in every phase whatever the attacker does to sessions.
type victim struct {
	e      *env
	c      *http.Client
	proxy  *session
	direct *session
	data   []byte
}

func newVictim(ctx context.Context, e *env) (*victim, error) {
	v := &victim{e: e, c: clientFrom("127.0.0.1"), data: make([]byte, partSize)}
	_, _ = rand.Read(v.data)
	var a answer
	if v.proxy, a = create(ctx, v.c, e.api, e.victim.token, "proxy", partSize, victimFile); v.proxy == nil {
		return nil, fmt.Errorf("victim's proxied session: %d %v: %w", a.status, a.body, a.failure())
	}
	if v.direct, a = create(ctx, v.c, e.api, e.victim.token, "direct", partSize, victimFile); v.direct == nil {
		return nil, fmt.Errorf("victim's direct session: %d %v: %w", a.status, a.body, a.failure())
	}
	return v, nil
}

// sample is what the victim saw in a phase.
type sample struct {
	bytes     int64
	latencies []time.Duration
	errors    map[string]int // "503 S3_UNAVAILABLE", "transport", …
}

func (s *sample) p(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	l := append([]time.Duration(nil), s.latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

// run sends parts until ctx ends.
func (v *victim) run(ctx context.Context) *sample {
	s := &sample{errors: map[string]int{}}
	var mu sync.Mutex
	record := func(took time.Duration, err string) {
		mu.Lock()
		defer mu.Unlock()
		if err != "" {
			s.errors[err]++
			return
		}
		s.bytes += partSize
		s.latencies = append(s.latencies, took)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for n := 1 + w; ctx.Err() == nil; n = n%64 + 1 {
				start := time.Now()
				var err string
				if w == 3 {
					err = v.directPart(ctx, n)
				} else {
					err = v.proxyPart(ctx, n)
				}
				if ctx.Err() != nil {
					return // cut by the phase's end, not an answer
				}
				record(time.Since(start), err)
			}
		})
	}
	wg.Wait()
	return s
}

func (v *victim) proxyPart(ctx context.Context, n int) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, v.proxy.partPath(v.e.api, 0, n), bytes.NewReader(v.data))
	if err != nil {
		return "request: " + err.Error()
	}
	req.ContentLength = partSize
	req.Header.Set("Authorization", "Bearer "+v.e.victim.token)
	return v.send(req)
}

func (v *victim) directPart(ctx context.Context, n int) string {
	a := call(ctx, v.c, http.MethodPost, v.direct.partPath(v.e.api, 0, n)+"/url", v.e.victim.token, map[string]any{})
	if a.err != nil {
		return "transport"
	}
	if a.status != http.StatusOK {
		return fmt.Sprintf("part URL %d %v", a.status, a.body["error"])
	}
	url, _ := a.body["url"].(string)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(v.data))
	if err != nil {
		return "request: " + err.Error()
	}
	req.ContentLength = partSize
	if h, ok := a.body["headers"].(map[string]any); ok {
		for k, val := range h {
			req.Header.Set(k, fmt.Sprint(val))
		}
	}
	return v.send(req)
}

// send makes the request and names its failure ("" for a 200).
func (v *victim) send(req *http.Request) string {
	resp, err := v.c.Do(req)
	if err != nil {
		if req.Context().Err() != nil {
			return ""
		}
		return "transport"
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	code := string(raw)
	if i := bytes.Index(raw, []byte(`"error":"`)); i >= 0 {
		code = string(raw[i+9:])
		if j := bytes.IndexByte([]byte(code), '"'); j >= 0 {
			code = code[:j]
		}
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, code)
}
