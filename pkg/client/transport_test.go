package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"k8s.io/client-go/rest"
)

// A bearer token is never sent in the clear off this machine unless the
// caller says so: the request is refused before the token is even fetched.
func TestTokensAreNotSentOverPlainHTTPOffLoopback(t *testing.T) {
	t.Parallel()
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		served.Add(1)
		writeJSON(w, http.StatusOK, map[string]any{"sessionId": "s", "status": "active"})
	}))
	t.Cleanup(srv.Close)
	// Every host name leads to the test server, so what is refused is
	// refused by the client, not by a failed lookup.
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}}
	t.Cleanup(tr.CloseIdleConnections)
	for _, tc := range []struct {
		base  string
		allow bool
		want  error
	}{
		{"http://uploads.mocs.svc:8082", false, ErrInsecureTransport},
		{"http://10.0.0.7:8082", false, ErrInsecureTransport},
		{"http://uploads.mocs.svc:8082", true, nil},
		{"http://127.0.0.1:8082", false, nil},
		{"http://[::1]:8082", false, nil},
		{"http://localhost:8082", false, nil},
	} {
		var fetched atomic.Int32
		c := New(tc.base, func(context.Context) (string, error) { fetched.Add(1); return "tok", nil })
		c.HTTP = &http.Client{Transport: tr}
		c.AllowInsecureHTTP = tc.allow
		before := served.Load()
		_, err := c.GetSession(context.Background(), "s")
		if tc.want != nil {
			if !errors.Is(err, tc.want) || fetched.Load() != 0 || served.Load() != before {
				t.Fatalf("%s: err %v, token fetched %d times, server reached %v; want refused before either",
					tc.base, err, fetched.Load(), served.Load() != before)
			}
			continue
		}
		if err != nil || served.Load() != before+1 {
			t.Fatalf("%s (allowed %v): %v", tc.base, tc.allow, err)
		}
	}
}

// A ServiceAccount token without an audience would be a key to the
// Kubernetes API; it is not even requested.
func TestServiceAccountTokensNeedAnAudience(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		asked.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	_, err := ServiceAccountToken(context.Background(), &rest.Config{Host: srv.URL}, "ns", "sa", "")
	if !errors.Is(err, ErrNoAudience) || asked.Load() != 0 {
		t.Fatalf("err = %v after %d requests to the API server; want ErrNoAudience and none", err, asked.Load())
	}
}
