package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"k8s.io/client-go/kubernetes"

	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

// account is a ServiceAccount with a token, as a service in the cluster has.
type account struct {
	name  string // the TokenReview username
	token string
}

var (
	accountsMu sync.Mutex
	accounts   = map[string]account{}
)

// serviceAccount creates (once) namespace/name and returns a token for it,
// bound to the upload API's audience, as clients get them.
func serviceAccount(t *testing.T, ns, name string) account {
	t.Helper()
	return serviceAccountFor(t, ns, name, uploadAudience)
}

// uploadAudience is the audience the operator accepts by default.
const uploadAudience = "uploads.mocs.dev"

// serviceAccountFor is serviceAccount with a token for audience ("": the API
// server's own, a plain ServiceAccount token).
func serviceAccountFor(t *testing.T, ns, name, audience string) account {
	t.Helper()
	accountsMu.Lock()
	defer accountsMu.Unlock()
	key := ns + "/" + name + "@" + audience
	if a, ok := accounts[key]; ok {
		return a
	}
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(stack.Kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	name, token, err := localenv.ServiceAccountToken(ctx, cs, ns, name, audience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a := account{name: name, token: token}
	accounts[key] = a
	return a
}

func user(t *testing.T) account  { return serviceAccount(t, "default", "dev-user") }
func other(t *testing.T) account { return serviceAccount(t, "default", "someone-else") }
func admin(t *testing.T) account { return serviceAccount(t, adminNamespace, "dev-admin") }

const adminNamespace = "mocupload-admins"

// response is an HTTP answer with its JSON body decoded.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (r response) str(k string) string { s, _ := r.body[k].(string); return s }

type reqOpt func(*http.Request)

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

// call sends a request to base (the API under test unless given) with a token;
// a request that gets no answer fails the test. Only the test's goroutine may
// call it: other goroutines use send.
func call(t *testing.T, base, method, path, token string, body io.Reader, opts ...reqOpt) response {
	t.Helper()
	r, err := send(base, method, path, token, body, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// send is call for any goroutine: it returns what went wrong instead.
func send(base, method, path, token string, body io.Reader, opts ...reqOpt) (response, error) {
	if base == "" {
		base = apiURL
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		return response{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if b, ok := body.(*bytes.Reader); ok {
		req.ContentLength = int64(b.Len())
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	out := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	// Not every answer is JSON (a 200 of a part has no body, probes answer text).
	_ = json.Unmarshal(raw, &out.body)
	return out, nil
}

// sendAsync runs f in a goroutine and returns where its answer arrives; an
// error arrives as status -1 with the error as the body, which every status
// check the test makes then reports.
func sendAsync(f func() (response, error)) <-chan response {
	done := make(chan response, 1)
	go func() {
		r, err := f()
		if err != nil {
			r = response{status: -1, raw: []byte(err.Error())}
		}
		done <- r
	}()
	return done
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// upload is a session created over HTTP with the bytes of its files.
type upload struct {
	id       string
	partSize int64
	files    []uploadFile
	token    string
}

type uploadFile struct {
	id        string
	name      string
	data      []byte
	partCount int
}

type fileReq struct {
	name, contentType string
	size              int64
}

// createUpload creates a session of the given files (5 MiB parts) as acct.
func createUpload(t *testing.T, acct account, files ...fileReq) *upload {
	t.Helper()
	return createUploadAt(t, "", acct, files...)
}

// createUploadAt is createUpload through the API at base.
func createUploadAt(t *testing.T, base string, acct account, files ...fileReq) *upload {
	t.Helper()
	var fs []map[string]any
	for _, f := range files {
		fs = append(fs, map[string]any{"name": f.name, "contentType": f.contentType, "sizeBytes": f.size})
	}
	r := call(t, base, "POST", "/api/mocs/uploads/sessions", acct.token, jsonBody(map[string]any{"files": fs, "partSizeBytes": 5 << 20}))
	if r.status != http.StatusCreated {
		t.Fatalf("create session: %d %s", r.status, r.raw)
	}
	u := &upload{id: r.str("sessionId"), partSize: int64(r.body["partSizeBytes"].(float64)), token: acct.token}
	for i, f := range r.body["files"].([]any) {
		m := f.(map[string]any)
		data := make([]byte, files[i].size)
		_, _ = rand.Read(data)
		u.files = append(u.files, uploadFile{id: m["fileId"].(string), name: m["name"].(string), data: data, partCount: int(m["partCount"].(float64))})
	}
	return u
}

func (u *upload) partPath(file, n int) string {
	return fmt.Sprintf("/api/mocs/uploads/sessions/%s/files/%s/parts/%d", u.id, u.files[file].id, n)
}

func (u *upload) partBytes(file, n int) []byte {
	d := u.files[file].data
	lo := int64(n-1) * u.partSize
	return d[lo:min(lo+u.partSize, int64(len(d)))]
}

func (u *upload) put(t *testing.T, base string, file, n int, opts ...reqOpt) response {
	t.Helper()
	return call(t, base, "PUT", u.partPath(file, n), u.token, bytes.NewReader(u.partBytes(file, n)), opts...)
}

// sendPart is put for any goroutine.
func (u *upload) sendPart(base string, file, n int, opts ...reqOpt) (response, error) {
	return send(base, "PUT", u.partPath(file, n), u.token, bytes.NewReader(u.partBytes(file, n)), opts...)
}

// putAll sends every part (concurrently, as a client would) and fails on any non-200.
func (u *upload) putAll(t *testing.T, base string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for i, f := range u.files {
		for n := 1; n <= f.partCount; n++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch r, err := u.sendPart(base, i, n); {
				case err != nil:
					errs <- fmt.Sprintf("part %d of file %d: %v", n, i, err)
				case r.status != 200:
					errs <- fmt.Sprintf("part %d of file %d: %d %s", n, i, r.status, r.raw)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		t.FailNow()
	}
}

func (u *upload) finalize(t *testing.T, base, title string) response {
	t.Helper()
	return call(t, base, "POST", "/api/mocs/uploads/finalize", u.token, jsonBody(map[string]any{"uploadSessionId": u.id, "title": title}))
}

// finalized uploads files and finalizes them under title; anything but a
// created MOC (201) fails the test.
func finalized(t *testing.T, acct account, title string, files ...fileReq) *upload {
	t.Helper()
	u := createUpload(t, acct, files...)
	u.putAll(t, "")
	if r := u.finalize(t, "", title); r.status != 201 {
		t.Fatalf("finalize %q: %d %s", title, r.status, r.raw)
	}
	return u
}

func uniqueTitle(prefix string) string {
	// Random, not time-based: titles (and so slugs) of the shared test user
	// must not collide between tests or runs.
	return prefix + " " + uuid.NewString()[:8]
}
