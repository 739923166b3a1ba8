package uploads_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// PostgreSQL cut off mid-finalize (a real proxy in front of it stops,
// after S3 completed every upload): the answer is 500 INTERNAL_ERROR, nothing
// is partially committed, the lock is released as soon as the database is
// back, and the session then finalizes.
func TestPostgresCutOffMidFinalize(t *testing.T) {
	ctx := context.Background()
	px, viaProxy := proxiedDatabase(t, "sslmode=disable&connect_timeout=2")
	proxied, err := store.Open(ctx, viaProxy)
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

// partitioned opens the test database through a relay that can go silent as
// a network partition does (faultproxy.Partition), with a client-side call
// deadline far beyond the test, so only the server can end what is stuck.
func partitioned(t *testing.T) (*store.Store, *faultproxy.Partition) {
	t.Helper()
	cfg := db.Pool.Config().ConnConfig
	part, err := faultproxy.NewPartition(net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	must(t, err)
	t.Cleanup(part.Close)
	s, err := store.OpenWithOptions(context.Background(), databaseAt(part.Addr(), "sslmode=disable&connect_timeout=2"), store.Options{CallTimeout: 10 * time.Minute})
	must(t, err)
	t.Cleanup(s.Close)
	return s, part
}

// cutAt arms a failpoint that cuts the partition the first time it is reached
// and says so on the returned channel.
func cutAt(t *testing.T, point string, part *faultproxy.Partition) <-chan struct{} {
	t.Helper()
	cut := make(chan struct{})
	var once sync.Once
	failpoint.EnableFunc(point, func() error {
		once.Do(func() { part.Cut(); close(cut) })
		return nil
	})
	t.Cleanup(func() { failpoint.Disable(point) })
	return cut
}

// silentBound is how long after a partition another replica must get through:
// PostgreSQL ends the transaction left idle by the silent client after
// idle_in_transaction_session_timeout, and the margin covers the lock's stale
// window and the retries' pace.
const silentBound = store.DefaultIdleInTransactionTimeout + 10*time.Second

// The network to PostgreSQL goes silent (packets dropped, nothing closed)
// right after the commit's SELECT … FOR UPDATE: the session's row is locked by
// a transaction whose client will never speak again. PostgreSQL ends it after
// idle_in_transaction_session_timeout, and another replica then finalizes the
// session within the stale window plus that bound; before, the row stayed
// locked until TCP gave up (about two hours), and every other finalize timed
// out waiting for it.
func TestSilentNetworkMidCommitDoesNotHoldTheRow(t *testing.T) {
	t.Parallel() // its failpoint is its own; only its holder goes through the partition
	holderDB, part := partitioned(t)
	svc, _ := newService(t)
	svc.StaleLockAfter = 2 * time.Second
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	title := "Silent " + ts.id.String()[:8]
	holder := onDB(svc, holderDB)
	cut := cutAt(t, "finalize/tx-after-insert-moc", part)
	hctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	held := make(chan finalizeResult, 1)
	go func() {
		res, err := holder.Finalize(hctx, uploads.FinalizeRequest{SessionID: ts.id, Title: title})
		held <- finalizeResult{res, err}
	}()
	select {
	case <-cut:
	case <-time.After(30 * time.Second):
		t.Fatal("the holder never reached its transaction")
	}
	start := time.Now()
	var res uploads.FinalizeResult
	for {
		ctx, stop := context.WithTimeout(context.Background(), time.Until(start.Add(silentBound))+time.Second)
		r, err := svc.Finalize(ctx, uploads.FinalizeRequest{SessionID: ts.id, Title: title})
		stop()
		if err == nil {
			res = r
			break
		}
		if time.Since(start) > silentBound {
			t.Fatalf("no other finalize got through %s after the network went silent mid-commit: %v", time.Since(start).Round(time.Millisecond), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("another replica finalized %s after the network went silent", time.Since(start).Round(time.Millisecond))
	if !res.Created || !res.TookOver {
		t.Fatalf("the other replica: %+v; want the MOC made by taking the stale lock over", res)
	}
	part.Close() // the holder's sockets go; what it answers comes from its lease's end
	if r := <-held; r.err == nil && r.res.Created {
		t.Fatalf("the silenced holder answered 201 too: %+v", r.res)
	}
	assertOneMOC(t, svc, ts)
}

// The same for the active-session cap's advisory lock: a creation whose
// network goes silent while it holds its owner's lock does not stop that
// owner's next session for longer than the bound.
func TestSilentNetworkMidCreateDoesNotHoldTheOwnersLock(t *testing.T) {
	t.Parallel() // as above
	holderDB, part := partitioned(t)
	svc, _ := newService(t)
	owner := "system:serviceaccount:test:" + uuid.NewString()[:8]
	req := func() uploads.Request {
		return uploads.Request{SessionID: uuid.New(), Owner: owner, MaxActive: 5,
			Files: []session.File{{Name: "a.pdf", ContentType: "application/pdf", SizeBytes: 100}}}
	}
	holder := onDB(svc, holderDB)
	cut := cutAt(t, "store/after-active-cap-lock", part)
	hctx, hcancel := context.WithCancel(context.Background())
	defer hcancel() // lets the silenced creation's connection go before the pool closes
	go func() { _, _ = holder.Activate(hctx, req()) }()
	select {
	case <-cut:
	case <-time.After(30 * time.Second):
		t.Fatal("the creation never took its owner's lock")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), silentBound)
	defer cancel()
	if _, err := svc.Activate(ctx, req()); err != nil {
		t.Fatalf("the owner's next session %s after the network went silent: %v", time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("the owner's next session was created %s after the network went silent", time.Since(start).Round(time.Millisecond))
}

// onDB is another replica of svc: the same settings, its own database pool.
func onDB(svc *uploads.Service, st *store.Store) *uploads.Service {
	return &uploads.Service{DB: st, S3: svc.S3, SessionTTL: svc.SessionTTL, StaleLockAfter: svc.StaleLockAfter,
		Clock: svc.Clock, Limits: svc.Limits, Buffers: svc.Buffers}
}
