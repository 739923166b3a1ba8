package store_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/testenv"
	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
)

// The store is tested against a PostgreSQL database of its own. Lock ages are
// measured on PostgreSQL's clock; a store opened with the
// mocupload.lock_clock setting sees that clock fixed at a chosen instant.
var dbURL string

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Needs{Database: "mocupload_store"}, func(e *testenv.Env) error { dbURL = e.DatabaseURL; return nil })
}

// open opens the store, its lock clock fixed at at unless at is zero.
func open(t *testing.T, at time.Time) *store.Store { return testenv.OpenStore(t, dbURL, at) }

// activeSession writes an active session of one file of two parts.
func activeSession(t *testing.T, s *store.Store, expires time.Time) (store.Session, store.File) {
	t.Helper()
	ctx := context.Background()
	id := uuid.New()
	f := store.File{ID: uuid.New(), SessionID: id, Name: "castle.pdf", ContentType: "application/pdf",
		SizeBytes: 6 << 20, PartCount: 2, S3Key: "sessions/" + id.String() + "/castle.pdf", SlotsPerPart: 3}
	sess, err := s.EnsureSession(ctx, store.Session{ID: id, UserID: "builder", PartSizeBytes: 5 << 20, ExpiresAt: expires,
		Namespace: "default", Name: id.String(), UID: uuid.NewString()}, []store.File{f}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.SetUploadID(ctx, f.ID, "upload-"+id.String()); err != nil || !ok {
		t.Fatalf("record the upload id: %v, %v", ok, err)
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

	firstToken := uuid.New()
	first, err := holderDB.TryLock(ctx, sess.ID, firstToken, stale, "Castle", "", false)
	if err != nil || !first.Acquired {
		t.Fatalf("first TryLock = %+v, %v", first, err)
	}
	if again, err := holderDB.TryLock(ctx, sess.ID, uuid.New(), stale, "Castle", "", false); err != nil || again.Acquired {
		t.Fatalf("second TryLock while held = %+v, %v; want refused", again, err)
	}
	if got, err := holderDB.GetSession(ctx, sess.ID); err != nil || got.Status != store.StatusFinalizing || !got.LockHeld(stale) {
		t.Fatalf("session while held = %+v, %v; want finalizing with a live lock", got, err)
	}
	if ok, err := holderDB.RenewLock(ctx, sess.ID, uuid.New()); err != nil || ok {
		t.Fatalf("renew with another token = %v, %v; want false", ok, err)
	}
	if ok, err := holderDB.RenewLock(ctx, sess.ID, firstToken); err != nil || !ok {
		t.Fatalf("renew by the holder = %v, %v; want true", ok, err)
	}
	if title, _, err := holderDB.FinalizeRequest(ctx, sess.ID); err != nil || title != "Castle" {
		t.Fatalf("stored request = %q, %v", title, err)
	}

	// Exactly staleAfter later the lock still holds; a microsecond more and it is stale.
	if l, err := open(t, at.Add(stale)).TryLock(ctx, sess.ID, uuid.New(), stale, "Other", "", false); err != nil || l.Acquired {
		t.Fatalf("TryLock at exactly %s = %+v, %v; want refused", stale, l, err)
	}
	later := open(t, at.Add(stale+time.Millisecond))
	takenToken := uuid.New()
	taken, err := later.TryLock(ctx, sess.ID, takenToken, stale, "Other", "", false)
	if err != nil || !taken.Acquired || taken.PreviousAge == nil || *taken.PreviousAge != stale+time.Millisecond {
		t.Fatalf("takeover = %+v, %v; want acquired with the old lock's age %s", taken, err, stale+time.Millisecond)
	}
	for name, op := range map[string]func() (bool, error){
		"renew":   func() (bool, error) { return holderDB.RenewLock(ctx, sess.ID, firstToken) },
		"release": func() (bool, error) { return holderDB.ReleaseLock(ctx, sess.ID, firstToken) },
		"fail":    func() (bool, error) { return holderDB.FailLocked(ctx, sess.ID, firstToken) },
	} {
		if ok, err := op(); err != nil || ok {
			t.Errorf("%s by the overtaken holder = %v, %v; want false", name, ok, err)
		}
	}
	if ok, err := later.ReleaseLock(ctx, sess.ID, takenToken); err != nil || !ok {
		t.Fatalf("release by the new holder = %v, %v", ok, err)
	}
	if got, err := later.GetSession(ctx, sess.ID); err != nil || got.Status != store.StatusActive {
		t.Fatalf("after release: %+v, %v; want active", got, err)
	}
}

// A part is a register: each PUT registers first and gets a slot that
// neither the register nor another PUT in flight holds; its record points the
// register at that slot. PUTs register and record only while the session
// takes parts: active, before expiresAt on PostgreSQL's clock, no live lock.
func TestPartWritesTakeSlotsOfTheirOwn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const stale = 5 * time.Minute
	s := open(t, time.Time{})
	sess, f := activeSession(t, s, time.Now().Add(time.Hour))
	begin := func() (store.PartWrite, error) {
		t.Helper()
		w, ok, err := s.BeginPartWrite(ctx, f.ID, 2, stale, time.Minute)
		if err == nil && !ok {
			t.Fatal("a PUT of an active session refused")
		}
		return w, err
	}
	register := func() (slot int, etag string) {
		t.Helper()
		must(t, s.Pool.QueryRow(ctx, `SELECT s3_part_number, etag FROM upload_parts WHERE file_id = $1 AND part_number = 2`, f.ID).Scan(&slot, &etag))
		return slot, etag
	}
	// Part 2 of a file with 3 slots per part: S3 part numbers 4, 5, 6.
	a, err := begin()
	must(t, err)
	if a.S3PartNumber != 4 {
		t.Fatalf("first PUT of part 2 writes S3 part %d; want 4", a.S3PartNumber)
	}
	if ok, err := s.RecordPart(ctx, a.Token, `"a"`, 5<<20, stale, time.Minute); err != nil || !ok {
		t.Fatalf("record = %v, %v", ok, err)
	}
	if slot, etag := register(); slot != 4 || etag != `"a"` {
		t.Fatalf("register = %d %s", slot, etag)
	}
	b, err := begin()
	must(t, err)
	c, err := begin()
	must(t, err)
	if b.S3PartNumber == 4 || c.S3PartNumber == 4 || b.S3PartNumber == c.S3PartNumber {
		t.Fatalf("PUTs in flight write S3 parts %d and %d beside the register's 4: each needs a slot of its own", b.S3PartNumber, c.S3PartNumber)
	}
	if _, err := begin(); !errors.Is(err, store.ErrPartBusy) {
		t.Fatalf("a fourth PUT with every slot taken: %v; want ErrPartBusy", err)
	}
	// c fails in a way S3 may still store: its slot is quarantined for an
	// hour; b's record moves the register, and a's old slot, quarantined for a
	// minute since a's record, is the one whose quarantine ends first.
	must(t, s.EndPartWrite(ctx, c.Token, time.Hour))
	if ok, err := s.RecordPart(ctx, b.Token, `"b"`, 5<<20, stale, time.Minute); err != nil || !ok {
		t.Fatalf("record b = %v, %v", ok, err)
	}
	if slot, etag := register(); slot != b.S3PartNumber || etag != `"b"` {
		t.Fatalf("register = %d %s; want b's", slot, etag)
	}
	d, err := begin()
	must(t, err)
	if d.S3PartNumber != 4 {
		t.Fatalf("PUT after b's record writes S3 part %d; want 4 (not b's register, and a's quarantine ends before c's)", d.S3PartNumber)
	}
	if ok, err := s.RecordPart(ctx, d.Token, `"d"`, 5<<20, stale, time.Minute); err != nil || !ok {
		t.Fatalf("record d = %v, %v", ok, err)
	}
	if ok, err := s.RecordPart(ctx, d.Token, `"d"`, 5<<20, stale, time.Minute); err != nil || ok {
		t.Fatalf("a second record of one registration = %v, %v; want refused", ok, err)
	}
	// Under a live finalize lock nothing registers or records.
	e, err := begin()
	must(t, err)
	if l, err := s.TryLock(ctx, sess.ID, uuid.New(), stale, "Castle", "", false); err != nil || !l.Acquired {
		t.Fatalf("TryLock = %+v, %v", l, err)
	}
	if _, ok, err := s.BeginPartWrite(ctx, f.ID, 2, stale, time.Minute); err != nil || ok {
		t.Fatalf("PUT registered under a live finalize lock: %v, %v", ok, err)
	}
	if ok, err := s.RecordPart(ctx, e.Token, `"e"`, 5<<20, stale, time.Minute); err != nil || ok {
		t.Fatalf("PUT recorded under a live finalize lock: %v, %v", ok, err)
	}
	if slot, etag := register(); slot != 4 || etag != `"d"` {
		t.Fatalf("register = %d %s after refused PUTs; want d's", slot, etag)
	}
}

// A lock is judged on its holder's window, stored with it: during a rolling
// change of STALE_LOCK_AFTER a replica with a shorter window cannot overtake a
// holder that renews on a longer one, in SQL (TryLock, a part's record, a
// delete's claim, the expiry) and in Go (Session.LockHeld) alike.
func TestLockIsJudgedOnItsHoldersWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const long, short = 10 * time.Second, 500 * time.Millisecond
	at := time.Now().UTC().Truncate(time.Millisecond)
	holder := open(t, at)
	sess, f := activeSession(t, holder, at.Add(time.Hour))
	if l, err := holder.TryLock(ctx, sess.ID, uuid.New(), long, "Castle", "", false); err != nil || !l.Acquired {
		t.Fatalf("TryLock = %+v, %v", l, err)
	}
	judge := open(t, at.Add(time.Second)) // past the judge's own window, well inside the holder's
	if l, err := judge.TryLock(ctx, sess.ID, uuid.New(), short, "Other", "", false); err != nil || l.Acquired {
		t.Fatalf("TryLock with a %s window a second into a %s lock = %+v, %v; want refused", short, long, l, err)
	}
	if got, err := judge.GetSession(ctx, sess.ID); err != nil || !got.LockHeld(short) || got.LockWindow(short) != long {
		t.Fatalf("session as the short-window replica reads it: %+v, %v; want the lock held on its holder's %s", got, err, long)
	}
	if _, ok, err := judge.BeginPartWrite(ctx, f.ID, 1, short, time.Minute); err != nil || ok {
		t.Fatalf("a PUT registered under the holder's live lock: %v, %v", ok, err)
	}
	if c, err := judge.ClaimForDelete(ctx, sess.ID, short); err != nil || c != store.ClaimLocked {
		t.Fatalf("claim for delete under the holder's live lock = %v, %v; want ClaimLocked", c, err)
	}
	later := open(t, at.Add(long+time.Millisecond))
	if l, err := later.TryLock(ctx, sess.ID, uuid.New(), short, "Other", "", false); err != nil || !l.Acquired {
		t.Fatalf("TryLock once the holder's window passed = %+v, %v; want the stale lock taken over", l, err)
	}
}

// Expiry is judged on PostgreSQL's clock: a replica whose clock is behind
// cannot register or record a part of a session PostgreSQL sees expired.
func TestPartWritesStopAtExpiryOnPostgreSQLsClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, time.Time{})
	_, f := activeSession(t, s, time.Now().Add(time.Hour))
	w, ok, err := s.BeginPartWrite(ctx, f.ID, 1, time.Minute, time.Minute)
	if err != nil || !ok {
		t.Fatalf("begin = %v, %v", ok, err)
	}
	must(t, execErr(s.Pool.Exec(ctx, `UPDATE upload_sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, f.SessionID)))
	if ok, err := s.RecordPart(ctx, w.Token, `"a"`, 5<<20, time.Minute, time.Minute); err != nil || ok {
		t.Fatalf("record after expiresAt = %v, %v; want refused", ok, err)
	}
	if _, ok, err := s.BeginPartWrite(ctx, f.ID, 1, time.Minute, time.Minute); err != nil || ok {
		t.Fatalf("begin after expiresAt = %v, %v; want refused", ok, err)
	}
	if l, err := s.TryLock(ctx, f.SessionID, uuid.New(), time.Minute, "Late", "", false); err != nil || l.Acquired {
		t.Fatalf("TryLock after expiresAt = %+v, %v; want refused (no MOC after expiry)", l, err)
	}
	if got, err := s.GetSession(ctx, f.SessionID); err != nil || !got.Expired(time.Now().Add(-time.Hour)) {
		t.Fatalf("session past expiresAt on PostgreSQL's clock, read by a replica an hour behind: %+v, %v; want expired", got, err)
	}
}

// A replica whose clock runs fast cannot expire a session early: Expire
// judges expires_at on PostgreSQL's clock.
func TestExpireWaitsForPostgreSQLsClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, time.Time{})
	sess, _ := activeSession(t, s, time.Now().Add(time.Minute))
	if ok, err := s.Expire(ctx, sess.ID, time.Minute); err != nil || ok {
		t.Fatalf("Expire a minute before expiresAt = %v, %v; want refused", ok, err)
	}
	must(t, execErr(s.Pool.Exec(ctx, `UPDATE upload_sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, sess.ID)))
	if ok, err := s.Expire(ctx, sess.ID, time.Minute); err != nil || !ok {
		t.Fatalf("Expire after expiresAt = %v, %v; want expired", ok, err)
	}
}

func execErr(_ pgconn.CommandTag, err error) error { return err }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
