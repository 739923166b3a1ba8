package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"k8s.io/utils/ptr"

	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/testenv"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// The handlers are tested over HTTP against the real PostgreSQL and a real
// versitygw; only authentication is a fixed table (TokenReview needs an API
// server, which test/e2e has).
var (
	testDB *store.Store
	testS3 *localenv.S3
)

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Needs{Database: "mocupload_webhook", OpenStore: true, S3: true, Failpoints: true},
		func(e *testenv.Env) error { testDB, testS3 = e.Store, e.S3; return nil })
}

// tokenUsers authenticates a token "name" or "name|group,group" as that user.
type tokenUsers struct{}

func (tokenUsers) Review(_ context.Context, token string) (auth.User, bool, error) {
	name, groups, _ := strings.Cut(token, "|")
	u := auth.User{Name: name}
	if groups != "" {
		u.Groups = strings.Split(groups, ",")
	}
	return u, true, nil
}

// testService is an upload engine on the test database and S3 (opts, if
// given, replace the S3 client options).
func testService(t testing.TB, s3opts *objectstore.Options) *uploads.Service {
	t.Helper()
	s3 := testS3.Client()
	if s3opts != nil {
		s3 = objectstore.New(*s3opts)
	}
	return &uploads.Service{
		DB: testDB, S3: s3, SessionTTL: time.Hour,
		Limits:  session.Limits{AllowedContentTypes: session.DefaultContentTypes, MaxFileSizeBytes: 5 * session.GiB},
		Buffers: partbuf.New(64*session.MiB, t.TempDir()),
	}
}

// serve runs the API of svc on a test server.
func serve(t *testing.T, svc *uploads.Service, partTimeout time.Duration) *httptest.Server {
	t.Helper()
	api := &API{
		Log: logr.Discard(), Auth: &auth.Authenticator{Reviewer: tokenUsers{}, TTL: time.Minute},
		Uploads: svc, PartTimeout: partTimeout,
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// activeSession is an activated session of one file of size bytes (5 MiB
// parts) owned by owner, with the file's bytes.
type activeSession struct {
	owner string
	act   uploads.Active
	data  []byte
}

func newSession(t *testing.T, svc *uploads.Service, size int64) *activeSession {
	t.Helper()
	return newSessionWith(t, svc, size, store.TransferProxy)
}

// newSessionWith activates a session of one file in the given transfer mode.
func newSessionWith(t *testing.T, svc *uploads.Service, size int64, transfer string) *activeSession {
	t.Helper()
	owner := "system:serviceaccount:webhook-test:" + uuid.NewString()[:8]
	act, err := svc.Activate(context.Background(), uploads.Request{
		SessionID: uuid.New(), Owner: owner, PartSizeBytes: ptr.To(5 * session.MiB), Transfer: transfer,
		Files: []session.File{{Name: "castle.pdf", ContentType: "application/pdf", SizeBytes: size}},
	})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	_, _ = rand.Read(data)
	return &activeSession{owner: owner, act: act, data: data}
}

func (s *activeSession) partPath(n int) string {
	return fmt.Sprintf("/api/mocs/uploads/sessions/%s/files/%s/parts/%d", s.act.Session.ID, s.act.Files[0].ID, n)
}

func (s *activeSession) part(n int) []byte {
	ps := s.act.Session.PartSizeBytes
	lo := int64(n-1) * ps
	return s.data[lo:min(lo+ps, int64(len(s.data)))]
}

// answer is an HTTP answer with its JSON body.
type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func (a answer) code() string { c, _ := a.body["error"].(string); return c }

// send makes a request as token; it fails the test only on a transport error.
func send(ctx context.Context, t *testing.T, method, url, token string, body []byte) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(raw, &a.body)
	return a, nil
}

// putPartAsync sends part n from another goroutine and returns where its
// answer arrives; a transport error comes back as status -1 (the test's own
// goroutine reports it: a goroutine must not end the test).
func (s *activeSession) putPartAsync(base string, n int) <-chan answer {
	done := make(chan answer, 1)
	go func() {
		a, err := send(context.Background(), nil, http.MethodPut, base+s.partPath(n), s.owner, s.part(n))
		if err != nil {
			a = answer{status: -1, body: map[string]any{"transport": err.Error()}}
		}
		done <- a
	}()
	return done
}

// await receives an answer from putPartAsync, failing the test if none
// arrives within a minute.
func await(t *testing.T, done <-chan answer) answer {
	t.Helper()
	select {
	case a := <-done:
		return a
	case <-time.After(time.Minute):
		t.Fatal("no answer within a minute")
		return answer{}
	}
}

func (s *activeSession) putPart(t *testing.T, base string, n int) answer {
	t.Helper()
	a, err := send(context.Background(), t, http.MethodPut, base+s.partPath(n), s.owner, s.part(n))
	if err != nil {
		t.Fatalf("PUT part %d: %v", n, err)
	}
	return a
}

// expiredOnPostgreSQL moves a session's expires_at into the past on
// PostgreSQL's clock, which judges expiry (a test's fake clock moves only the
// service's answers).
func expiredOnPostgreSQL(t *testing.T, id uuid.UUID) {
	t.Helper()
	if _, err := testDB.Pool.Exec(context.Background(), `UPDATE upload_sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
}

func (s *activeSession) finalizeBody(title string) []byte {
	b, _ := json.Marshal(map[string]any{"uploadSessionId": s.act.Session.ID.String(), "title": title})
	return b
}
