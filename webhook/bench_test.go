package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// s3Sink answers every S3 request in memory: it drains the body (as S3 would
// read it) and returns an ETag. It stands in for S3 only here, to measure what
// the operator itself costs per part; `make bench` measures against a real S3.
type s3Sink struct{ received atomic.Int64 }

func (s *s3Sink) Do(r *http.Request) (*http.Response, error) {
	var n int64
	if r.Body != nil {
		n, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	s.received.Add(n)
	h := http.Header{}
	h.Set("ETag", `"0123456789abcdef0123456789abcdef"`)
	return &http.Response{StatusCode: http.StatusOK, Header: h, Body: http.NoBody, ContentLength: 0, Request: r}, nil
}

type staticReviewer struct{}

func (staticReviewer) Review(context.Context, string) (auth.User, bool, error) {
	return auth.User{Name: "bench"}, true, nil
}

// BenchmarkPutPart is the part handler end to end except S3: routing,
// correlation, auth (cache hit), the session and file reads and the part
// upsert in the real PostgreSQL, the buffer (memory or spilled) and the SDK
// request, sent to an in-memory sink.
func BenchmarkPutPart(b *testing.B) {
	ctx := context.Background()
	url, drop, err := localenv.CreateDatabase(ctx, localenv.RandomName("mocupload_webhook_bench"), false)
	if err != nil {
		b.Skip(err) // PostgreSQL not running: `make test` / hack/ensure-services.sh start it
	}
	b.Cleanup(drop)
	db, err := store.Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)

	for _, c := range []struct {
		name     string
		partSize int64
		budget   int64
	}{
		{"5MiB/memory", 5 * session.MiB, 256 * session.MiB},
		{"16MiB/memory", 16 * session.MiB, 256 * session.MiB},
		{"16MiB/spilled", 16 * session.MiB, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			sink := &s3Sink{}
			api := benchAPI(b, db, sink, c.budget)
			sessID, fileID := benchSession(b, db, c.partSize)
			h := api.Handler()
			body := bytes.Repeat([]byte{0x5a}, int(c.partSize))
			path := fmt.Sprintf("/api/mocs/uploads/sessions/%s/files/%s/parts/", sessID, fileID)
			b.SetBytes(c.partSize)
			n := 0
			for b.Loop() {
				n = n%10000 + 1
				serveBenchPart(b, h, path, n, body)
			}
			if got := sink.received.Load(); got < c.partSize {
				b.Fatalf("the sink received %d bytes", got)
			}
		})
	}
}

// serveBenchPart PUTs body as part n through h, as the bench user, and fails
// on anything but 200.
func serveBenchPart(tb testing.TB, h http.Handler, path string, n int, body []byte) {
	req := httptest.NewRequest(http.MethodPut, path+strconv.Itoa(n), bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer bench-token")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		tb.Fatalf("part %d: %d %s", n, rec.Code, rec.Body)
	}
}

func benchAPI(b testing.TB, db *store.Store, sink *s3Sink, budget int64) *API {
	s3 := objectstore.New(objectstore.Options{
		Endpoint: "https://s3.invalid", Bucket: "mocs", AccessKeyID: "k", SecretAccessKey: "s",
		UnsignedPayload: true, HTTPClient: sink,
	})
	return &API{
		Log:  logr.Discard(),
		Auth: &auth.Authenticator{Reviewer: staticReviewer{}, TTL: time.Hour},
		Uploads: &uploads.Service{
			DB: db, S3: s3, Buffers: partbuf.New(budget, b.TempDir()),
		},
		PartTimeout: 25 * time.Second,
	}
}

// benchSession is an active session of one 10,000-part file owned by "bench".
func benchSession(b testing.TB, db *store.Store, partSize int64) (uuid.UUID, uuid.UUID) {
	ctx := context.Background()
	id, fileID := uuid.New(), uuid.New()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO upload_sessions (id, user_id, status, part_size_bytes, expires_at)
		VALUES ($1, 'bench', 'active', $2, now() + interval '1 hour')`, id, partSize); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO upload_files (id, session_id, ordinal, name, content_type, size_bytes, part_count, s3_key, s3_upload_id)
		VALUES ($1, $2, 0, 'b.pdf', 'application/pdf', $3, 10000, 'bench/b.pdf', 'upload-1')`, fileID, id, partSize*10000); err != nil {
		b.Fatal(err)
	}
	return id, fileID
}
