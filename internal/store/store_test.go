package store_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/faultproxy"
	"github.com/mocs-dev/upload-operator/internal/leakcheck"
	"github.com/mocs-dev/upload-operator/internal/localenv"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// The store is tested against a PostgreSQL database of its own. Lock ages are
// measured on PostgreSQL's clock; a store opened with the
// mocupload.lock_clock setting sees that clock fixed at a chosen instant.
var dbURL string

func TestMain(m *testing.M) {
	code := func() int {
		url, drop, err := localenv.CreateDatabase(context.Background(), localenv.RandomName("mocupload_store"), false)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer drop()
		dbURL = url
		return m.Run()
	}()
	if code == 0 {
		code = leakcheck.Check()
	}
	os.Exit(code)
}

// open opens the store, its lock clock fixed at at unless at is zero.
func open(t *testing.T, at time.Time) *store.Store {
	t.Helper()
	u := dbURL
	if !at.IsZero() {
		var err error
		if u, err = localenv.WithLockClock(dbURL, at); err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// activeSession writes an active session of one file of two parts.
func activeSession(t *testing.T, s *store.Store, expires time.Time) (store.Session, store.File) {
	t.Helper()
	ctx := context.Background()
	id := uuid.New()
	f := store.File{ID: uuid.New(), SessionID: id, Name: "castle.pdf", ContentType: "application/pdf",
		SizeBytes: 6 << 20, PartCount: 2, S3Key: "sessions/" + id.String() + "/castle.pdf"}
	sess, err := s.EnsureSession(ctx, store.Session{ID: id, UserID: "builder", PartSizeBytes: 5 << 20, ExpiresAt: expires,
		Namespace: "default", Name: id.String(), UID: uuid.NewString()}, []store.File{f}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Activate(ctx, id); err != nil || !ok {
		t.Fatalf("activate: %v, %v", ok, err)
	}
	return sess, f
}

// Migrations are applied once: a second Open (a second replica) finds
// nothing to do and the schema works.
func TestOpenTwiceMigratesOnce(t *testing.T) {
	t.Parallel()
	a, b := open(t, time.Time{}), open(t, time.Time{})
	var versions int
	if err := b.Pool.QueryRow(context.Background(), `SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if versions < 3 {
		t.Fatalf("%d migrations recorded, want every one once", versions)
	}
	activeSession(t, a, time.Now().Add(time.Hour))
}

// A replica that starts while PostgreSQL is unreachable waits for it (found
// by the soak: a replica restarted during a database cut exited at once and,
// in a cluster, would have sat out a crash-loop back-off); one that reaches
// PostgreSQL and is refused fails at once.
func TestOpenWaitsForAnUnreachableDatabase(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxies := faultproxy.New()
	defer proxies.Close()
	px, err := proxies.Add("pg", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	px.Disable()
	u.Host = px.Addr
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var refused int
	s, err := store.OpenWithOptions(ctx, u.String(), store.Options{OnUnreachable: func(error) {
		if refused++; refused == 2 {
			must(t, px.Enable()) // back after two refusals
		}
	}})
	if err != nil {
		t.Fatalf("open while PostgreSQL was unreachable twice: %v", err)
	}
	s.Close()
	if refused != 2 {
		t.Fatalf("told of %d refusals, want 2", refused)
	}

	u.Host, u.Path = px.Addr, "/no_such_database_"+uuid.NewString()[:8]
	start := time.Now()
	if _, err := store.OpenWithOptions(ctx, u.String(), store.Options{OnUnreachable: func(e error) {
		t.Errorf("a refusal by the server was waited out: %v", e)
	}}); err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("open of a missing database: %v after %s; want a prompt error", err, time.Since(start))
	}
}

// The lock: one holder at a time; renewals, releases and failures only by the
// token that took it; stale strictly after staleAfter on PostgreSQL's clock,
// then taken over with the old lock's age reported, after which the old
// holder can change nothing.
func TestFinalizeLockIsALeaseWithAToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const stale = 5 * time.Minute
	at := time.Now().UTC().Truncate(time.Millisecond)
	holderDB := open(t, at)
	sess, _ := activeSession(t, holderDB, at.Add(time.Hour))

	first, err := holderDB.TryLock(ctx, sess.ID, stale, "Castle", "")
	if err != nil || !first.Acquired {
		t.Fatalf("first TryLock = %+v, %v", first, err)
	}
	if again, err := holderDB.TryLock(ctx, sess.ID, stale, "Castle", ""); err != nil || again.Acquired || again.Session.Status != store.StatusFinalizing {
		t.Fatalf("second TryLock while held = %+v, %v; want refused, session finalizing", again, err)
	}
	if ok, err := holderDB.RenewLock(ctx, sess.ID, uuid.New()); err != nil || ok {
		t.Fatalf("renew with another token = %v, %v; want false", ok, err)
	}
	if ok, err := holderDB.RenewLock(ctx, sess.ID, first.Token); err != nil || !ok {
		t.Fatalf("renew by the holder = %v, %v; want true", ok, err)
	}
	if title, _, err := holderDB.FinalizeRequest(ctx, sess.ID); err != nil || title != "Castle" {
		t.Fatalf("stored request = %q, %v", title, err)
	}

	// Exactly staleAfter later the lock still holds; a microsecond more and it is stale.
	if l, err := open(t, at.Add(stale)).TryLock(ctx, sess.ID, stale, "Other", ""); err != nil || l.Acquired {
		t.Fatalf("TryLock at exactly %s = %+v, %v; want refused", stale, l, err)
	}
	later := open(t, at.Add(stale+time.Millisecond))
	taken, err := later.TryLock(ctx, sess.ID, stale, "Other", "")
	if err != nil || !taken.Acquired || taken.PreviousAge == nil || *taken.PreviousAge != stale+time.Millisecond {
		t.Fatalf("takeover = %+v, %v; want acquired with the old lock's age %s", taken, err, stale+time.Millisecond)
	}
	for name, op := range map[string]func() (bool, error){
		"renew":   func() (bool, error) { return holderDB.RenewLock(ctx, sess.ID, first.Token) },
		"release": func() (bool, error) { return holderDB.ReleaseLock(ctx, sess.ID, first.Token) },
		"fail":    func() (bool, error) { return holderDB.FailLocked(ctx, sess.ID, first.Token) },
	} {
		if ok, err := op(); err != nil || ok {
			t.Errorf("%s by the overtaken holder = %v, %v; want false", name, ok, err)
		}
	}
	if ok, err := later.ReleaseLock(ctx, sess.ID, taken.Token); err != nil || !ok {
		t.Fatalf("release by the new holder = %v, %v", ok, err)
	}
	if got, err := later.GetSession(ctx, sess.ID); err != nil || got.Status != store.StatusActive {
		t.Fatalf("after release: %+v, %v; want active", got, err)
	}
}

// A part is recorded only while the session takes parts: active, before
// expiresAt, no live lock. Sending a part again keeps one row and remembers
// every ETag it was acknowledged with.
func TestUpsertPartOnlyWhileTheSessionTakesParts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const stale = 5 * time.Minute
	s := open(t, time.Time{})
	now := time.Now()
	sess, f := activeSession(t, s, now.Add(time.Hour))
	put := func(etag string, at time.Time) bool {
		t.Helper()
		ok, err := s.UpsertPart(ctx, store.Part{FileID: f.ID, PartNumber: 1, ETag: etag, SizeBytes: 5 << 20}, at, stale)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !put(`"a"`, now) || !put(`"b"`, now) {
		t.Fatal("parts of an active session refused")
	}
	var rows int
	var acked []string
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) OVER (), acked_etags FROM upload_parts WHERE file_id = $1`, f.ID).Scan(&rows, &acked); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || len(acked) != 2 || acked[0] != `"a"` || acked[1] != `"b"` {
		t.Fatalf("%d rows, acked %q; want one row acked with \"a\" then \"b\"", rows, acked)
	}
	if put(`"c"`, now.Add(time.Hour+time.Second)) {
		t.Error("a part recorded after expiresAt")
	}
	if l, err := s.TryLock(ctx, sess.ID, stale, "Castle", ""); err != nil || !l.Acquired {
		t.Fatalf("TryLock = %+v, %v", l, err)
	}
	if put(`"d"`, now) {
		t.Error("a part recorded under a live finalize lock")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
