package uploads_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/faultproxy"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// PostgreSQL cut off mid-finalize (a real proxy in front of it stops,
// after S3 completed every upload): the answer is 500 INTERNAL_ERROR, nothing
// is partially committed, the lock is released as soon as the database is
// back, and the session then finalizes.
func TestPostgresCutOffMidFinalize(t *testing.T) {
	ctx := context.Background()
	fp := faultproxy.New()
	defer fp.Close()
	cfg := db.Pool.Config().ConnConfig
	px, err := fp.Add("postgres", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	if err != nil {
		t.Fatal(err)
	}
	u := &url.URL{Scheme: "postgres", User: url.User(cfg.User), Host: px.Addr, Path: "/" + cfg.Database, RawQuery: "sslmode=disable&connect_timeout=2"}
	proxied, err := store.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer proxied.Close()

	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB, 100)
	ts.uploadAll(t, svc)
	svc.DB = proxied
	title := "Cut " + ts.id.String()[:8]

	failpoint.EnableFunc("finalize/after-all-complete", func() error { px.Disable(); return nil })
	_, err = svc.Finalize(ctx, uploads.FinalizeRequest{SessionID: ts.id, Title: title})
	failpoint.Disable("finalize/after-all-complete")
	var ie *uploads.InternalError
	if !errors.As(err, &ie) {
		_ = px.Enable()
		t.Fatalf("err = %v, want an internal error (500)", err)
	}
	if n := countRows(t, `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, ts.id); n != 0 {
		t.Fatalf("%d moc_instructions rows with the database cut off", n)
	}
	if n := countRows(t, `SELECT count(*) FROM upload_sessions WHERE id = $1 AND finalizing_at IS NOT NULL`, ts.id); n != 1 {
		t.Fatal("lock not held while the database is unreachable")
	}
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countRows(t, `SELECT count(*) FROM upload_sessions WHERE id = $1 AND finalizing_at IS NULL AND status = 'active'`, ts.id) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("lock not released within 10s of the database coming back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := svc.Finalize(ctx, uploads.FinalizeRequest{SessionID: ts.id, Title: title})
	if err != nil || !res.Created {
		t.Fatalf("finalize after the database is back: %v", err)
	}
	svc.DB = db
	assertOneMOC(t, svc, ts)
}
