package uploads_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/utils/ptr"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/testenv"
	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// The engine is tested against the real services: a PostgreSQL database of
// this package's own and a versitygw on a free port.
var (
	db    *store.Store
	dbURL string
	s3srv *localenv.S3
)

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Needs{Database: "mocupload_uploads", OpenStore: true, S3: true, Failpoints: true},
		func(e *testenv.Env) error { dbURL, db, s3srv = e.DatabaseURL, e.Store, e.S3; return nil })
}

// clock is a settable clock shared by a service under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time                  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *clock) Add(d time.Duration)             { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newService(t *testing.T) (*uploads.Service, *clock) {
	t.Helper()
	clk := &clock{t: time.Now().UTC()}
	return &uploads.Service{
		DB: db, S3: s3srv.Client(), SessionTTL: time.Hour, StaleLockAfter: 5 * time.Minute, Clock: clk,
		Limits:  session.Limits{AllowedContentTypes: session.DefaultContentTypes, MaxFileSizeBytes: 5 * session.GiB},
		Buffers: partbuf.New(64*session.MiB, t.TempDir()),
	}, clk
}

// testSession is an activated session with the bytes of its files.
type testSession struct {
	id    uuid.UUID
	owner string
	act   uploads.Active
	data  [][]byte
}

// activate creates a session of files with the given sizes (5 MiB parts).
func activate(t *testing.T, svc *uploads.Service, sizes ...int64) *testSession {
	t.Helper()
	ts := &testSession{id: uuid.New(), owner: "system:serviceaccount:test:" + uuid.NewString()[:8]}
	req := uploads.Request{SessionID: ts.id, Owner: ts.owner, PartSizeBytes: ptr.To(5 * session.MiB)}
	for i, sz := range sizes {
		req.Files = append(req.Files, session.File{Name: fmt.Sprintf("file-%d.pdf", i), ContentType: "application/pdf", SizeBytes: sz})
		b := make([]byte, sz)
		_, _ = rand.Read(b)
		ts.data = append(ts.data, b)
	}
	act, err := svc.Activate(context.Background(), req)
	if err != nil {
		t.Fatalf("activate: %v", err)
	}
	ts.act = act
	return ts
}

// uploadAll sends every part of every file, except those listed in skip
// ("file/part").
func (ts *testSession) uploadAll(t *testing.T, svc *uploads.Service, skip ...string) {
	t.Helper()
	for i, f := range ts.act.Files {
		for n := 1; n <= f.PartCount; n++ {
			if contains(skip, fmt.Sprintf("%d/%d", i, n)) {
				continue
			}
			ts.uploadPart(t, svc, i, n)
		}
	}
}

func (ts *testSession) uploadPart(t *testing.T, svc *uploads.Service, file, n int) store.Part {
	t.Helper()
	f := ts.act.Files[file]
	ps := ts.act.Session.PartSizeBytes
	lo := int64(n-1) * ps
	hi := min(lo+ps, f.SizeBytes)
	p, err := svc.StorePart(context.Background(), uploads.PartUpload{
		Session: ts.act.Session, File: f, PartNumber: n, Body: bytes.NewReader(ts.data[file][lo:hi]), Size: hi - lo,
	})
	if err != nil {
		t.Fatalf("part %d of file %d: %v", n, file, err)
	}
	return p
}

// ageLock makes a session's finalize lock older by d on PostgreSQL's clock,
// as if its holder had stopped renewing it d ago.
func ageLock(t *testing.T, id uuid.UUID, d time.Duration) {
	t.Helper()
	if _, err := pool().Exec(context.Background(),
		`UPDATE upload_sessions SET finalizing_at = finalizing_at - $2 * interval '1 microsecond' WHERE id = $1`,
		id, d.Microseconds()); err != nil {
		t.Fatal(err)
	}
}

// pastExpiry moves a session past its expiresAt on both clocks that judge it:
// the service's (answers) and PostgreSQL's (what may still be written, and
// the expiry itself).
func pastExpiry(t *testing.T, clk *clock, id uuid.UUID) {
	t.Helper()
	clk.Add(2 * time.Hour)
	must(t, execErr(pool().Exec(context.Background(),
		`UPDATE upload_sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, id)))
}

// gate is a failpoint gate a test waits at.
type gate struct{ *failpoint.Gate }

// holdAt holds the first goroutine that reaches point until the test releases it.
func holdAt(t *testing.T, point string) gate {
	t.Helper()
	g := failpoint.Hold(point)
	t.Cleanup(g.Close)
	return gate{g}
}

// wait blocks until a goroutine is held at the gate.
func (g gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.Reached():
	case <-time.After(30 * time.Second):
		t.Fatal("nothing reached the failpoint")
	}
}

func (g gate) release() { g.Release() }

func pool() *pgxpool.Pool { return db.Pool }

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// must fails the test on err: for the reads and set-ups a check depends on.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// execErr keeps the error of an Exec, for must.
func execErr(_ pgconn.CommandTag, err error) error { return err }

// proxiedDatabase is the test database behind a real proxy the test can cut
// or slow: the proxy, and a URL through it with query.
func proxiedDatabase(t *testing.T, query string) (*faultproxy.Proxy, string) {
	t.Helper()
	fp := faultproxy.New()
	t.Cleanup(fp.Close)
	cfg := db.Pool.Config().ConnConfig
	px, err := fp.Add("postgres", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	if err != nil {
		t.Fatal(err)
	}
	return px, databaseAt(px.Addr, query)
}

// databaseAt is the test database's URL through addr (a relay), with query.
func databaseAt(addr, query string) string {
	cfg := db.Pool.Config().ConnConfig
	u := &url.URL{Scheme: "postgres", User: url.User(cfg.User), Host: addr, Path: "/" + cfg.Database, RawQuery: query}
	return u.String()
}
