// Package client is the Go client of the upload-operator's API: create a
// session for files on disk, upload their parts with bounded concurrency and
// the retries the client guide prescribes, resume an interrupted upload
// (only missing parts are sent), and finalize, handling slug conflicts.
//
//	c := client.New("http://upload-operator.mocs:8082", client.StaticToken(token))
//	moc, err := c.UploadFiles(ctx, "Castle", "", []string{"castle.pdf", "castle.io"})
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TokenSource returns the bearer token for a request.
type TokenSource func(ctx context.Context) (string, error)

// StaticToken always returns token.
func StaticToken(token string) TokenSource {
	return func(context.Context) (string, error) { return token, nil }
}

// Client talks to one upload API.
type Client struct {
	BaseURL string
	Token   TokenSource
	HTTP    *http.Client
	// Concurrency bounds parts in flight (default 4). Memory is at most
	// Concurrency × one read buffer: parts stream from disk.
	Concurrency int
	// MaxRetries after the first attempt (default 3), with exponential backoff
	// from BaseBackoff (default 1 s), honouring Retry-After on 429/503.
	MaxRetries  int
	BaseBackoff time.Duration
	// RequestTimeout per attempt (default 25 s, the server's part budget).
	RequestTimeout time.Duration
	// OnProgress, if set, is called as parts complete (from several goroutines).
	OnProgress func(Progress)
	// Transfer, if set, is the transfer mode of the sessions CreateSession
	// creates: "proxy" or "direct" (empty: the server's default, proxy).
	// Upload follows whatever mode the session has.
	Transfer string
	// CorrelationID, if set, is sent with every request.
	CorrelationID string
	// FinalizeWait bounds how long Finalize waits while another finalize of
	// the session is in progress (default 15 min), polling every few seconds.
	FinalizeWait time.Duration
	// AllowInsecureHTTP lets the client send its bearer token over plain
	// http:// to a host other than loopback (a mesh that encrypts the
	// connection itself). Without it such a BaseURL is refused before any
	// token is fetched or sent: anyone on the path could replay the token.
	AllowInsecureHTTP bool

	// NoChecksums: Specs declares no whole-file checksums (each costs a read
	// of the file before the session is created).
	NoChecksums bool

	caErr error    // UPLOAD_API_CA_FILE could not be used: every request says so
	crcs  sync.Map // FileCRC64NVME by path, size and modification time
}

// New returns a client with the defaults of the client guide. When
// UPLOAD_API_CA_FILE is set, the API's certificate is verified against that PEM
// bundle (as for the self-signed CA of `make dev`).
func New(baseURL string, token TokenSource) *Client {
	c := &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{Transport: newTransport(nil)}}
	if f := os.Getenv("UPLOAD_API_CA_FILE"); f != "" {
		c.caErr = c.UseCAFile(f)
	}
	return c
}

// UseCAFile verifies the API's certificate against the PEM bundle at path
// (instead of the system's CAs).
func (c *Client) UseCAFile(path string) error {
	pem, err := os.ReadFile(path) //nolint:gosec // the caller's own CA file, by design
	if err != nil {
		return fmt.Errorf("upload API CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("upload API CA file %s: no PEM certificate in it", path)
	}
	c.HTTP = &http.Client{Transport: newTransport(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})}
	c.caErr = nil
	return nil
}

// newTransport speaks HTTP/1.1 only and keeps a connection per part in
// flight. Over HTTP/2 every part shares one connection and its flow-control
// window, and the server copies each body twice more on its way (frames into
// a stream buffer, then out of it): more CPU per byte at the operator and
// fewer MB/s (docs/performance.md, item 10).
func newTransport(tlsConfig *tls.Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tlsConfig
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	// The default keeps two idle connections per host: at a higher
	// concurrency every other part would pay a new TLS handshake.
	t.MaxIdleConnsPerHost = 64
	return t
}

func (c *Client) concurrency() int { return def(c.Concurrency, 4) }
func (c *Client) maxRetries() int  { return def(c.MaxRetries, 3) }
func (c *Client) backoff() time.Duration {
	return time.Duration(def(int64(c.BaseBackoff), int64(time.Second)))
}
func (c *Client) timeout() time.Duration {
	return time.Duration(def(int64(c.RequestTimeout), int64(25*time.Second)))
}

func (c *Client) finalizeWait() time.Duration {
	return time.Duration(def(int64(c.FinalizeWait), int64(15*time.Minute)))
}

func def[T int | int64](v, d T) T {
	if v == 0 {
		return d
	}
	return v
}

// APIError is an error answer of the API.
type APIError struct {
	Status int
	Code   string         // the stable "error" code
	Body   map[string]any // the whole body
	Header http.Header
}

func (e *APIError) Error() string {
	return fmt.Sprintf("upload API: %d %s", e.Status, e.Code)
}

// retryable: timeouts, rate limits, unavailable.
func (e *APIError) retryable() bool {
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests ||
		e.Status == http.StatusServiceUnavailable || e.Status == http.StatusBadGateway || e.Status == http.StatusGatewayTimeout
}

// IsCode reports whether err is an APIError with the given code.
func IsCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// do sends one request with retries. body is rewound for each attempt.
func (c *Client) do(ctx context.Context, method, path string, body io.ReadSeeker, size int64, out any) error {
	_, err := c.doStatus(ctx, method, path, body, size, out, nil)
	return err
}

// doStatus is do that also returns the final HTTP status.
func (c *Client) doStatus(ctx context.Context, method, path string, body io.ReadSeeker, size int64, out any, hdr http.Header) (int, error) {
	if err := c.checkTransport(); err != nil {
		return 0, err // not retried: nothing will change
	}
	var last error
	for attempt := 0; ; attempt++ {
		status, err := c.once(ctx, method, path, body, size, out, hdr)
		if err == nil {
			return status, nil
		}
		last = err
		var ae *APIError
		isAPI := errors.As(err, &ae)
		if (isAPI && !ae.retryable()) || ctx.Err() != nil || attempt >= c.maxRetries() {
			return 0, last
		}
		wait := c.backoff() << attempt
		if isAPI {
			if ra, err := strconv.Atoi(ae.Header.Get("Retry-After")); err == nil && time.Duration(ra)*time.Second > wait {
				wait = time.Duration(ra) * time.Second
			}
		}
		wait += time.Duration(rand.Int64N(int64(wait)/5 + 1)) //nolint:gosec // up to +20 % jitter: no secret in it
		select {
		case <-ctx.Done():
			return 0, last
		case <-time.After(wait):
		}
	}
}

// ErrInsecureTransport refuses to send a token in the clear off this machine.
var ErrInsecureTransport = errors.New("refusing to send a bearer token over plain http:// to a host that is not loopback " +
	"(use https://, or allow it explicitly: Client.AllowInsecureHTTP, mocupload --insecure-http)")

// checkTransport refuses a plain-http BaseURL off loopback unless allowed.
func (c *Client) checkTransport() error {
	if c.AllowInsecureHTTP {
		return nil
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return fmt.Errorf("upload API URL: %w", err)
	}
	if !strings.EqualFold(u.Scheme, "http") || loopback(u.Hostname()) {
		return nil
	}
	return ErrInsecureTransport
}

// loopback reports whether host names this machine only.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Client) once(ctx context.Context, method, path string, body io.ReadSeeker, size int64, out any, hdr http.Header) (int, error) {
	if c.caErr != nil {
		return 0, c.caErr
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	var rd io.Reader
	if body != nil {
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		fenced := &attemptBody{r: body}
		defer fenced.Close()
		rd = fenced
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.ContentLength = size
	}
	token, err := c.Token(ctx)
	if err != nil {
		return 0, fmt.Errorf("token: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if c.CorrelationID != "" {
		req.Header.Set("X-Correlation-ID", c.CorrelationID)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode >= 300 {
		ae := &APIError{Status: resp.StatusCode, Header: resp.Header}
		_ = json.Unmarshal(raw, &ae.Body)
		ae.Code, _ = ae.Body["error"].(string)
		return resp.StatusCode, ae
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

func jsonBody(v any) (io.ReadSeeker, int64) {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b), int64(len(b))
}

// attemptBody is one attempt's view of a request body. The transport reads a
// body in a goroutine of its own and may still be reading it after the
// attempt has its answer (one that came before the whole body was sent), so
// the next attempt must not rewind the shared reader under it: the attempt
// closes its view when it ends, and Close waits for a read in progress.
type attemptBody struct {
	mu     sync.Mutex
	r      io.Reader
	closed bool
}

// errAttemptOver is what the transport reads from a body whose attempt ended.
var errAttemptOver = errors.New("request body: the attempt is over")

func (b *attemptBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errAttemptOver
	}
	return b.r.Read(p)
}

func (b *attemptBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}
