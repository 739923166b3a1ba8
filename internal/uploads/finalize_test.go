package uploads_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/testenv"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

func finalize(svc *uploads.Service, ts *testSession, title string) (uploads.FinalizeResult, error) {
	return svc.Finalize(context.Background(), uploads.FinalizeRequest{SessionID: ts.id, Title: title})
}

func countRows(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool().QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// assertOneMOC checks exactly one MOC for the session, one moc_files row per
// file, and every S3 object holding exactly the bytes that were sent.
func assertOneMOC(t *testing.T, svc *uploads.Service, ts *testSession) {
	t.Helper()
	ctx := context.Background()
	if n := countRows(t, `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, ts.id); n != 1 {
		t.Fatalf("moc_instructions rows = %d, want 1", n)
	}
	if n := countRows(t, `SELECT count(*) FROM moc_files f JOIN moc_instructions m ON m.id = f.moc_id
		WHERE m.upload_session_id = $1`, ts.id); n != len(ts.act.Files) {
		t.Fatalf("moc_files rows = %d, want %d", n, len(ts.act.Files))
	}
	if n := countRows(t, `SELECT count(*) FROM upload_sessions WHERE id = $1 AND status = 'finalized'
		AND finalized_at IS NOT NULL AND finalizing_at IS NULL`, ts.id); n != 1 {
		t.Fatalf("upload_sessions not finalized")
	}
	for i, f := range ts.act.Files {
		rc, err := svc.S3.GetObject(ctx, f.S3Key)
		if err != nil {
			t.Fatalf("object of file %d: %v", i, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("object of file %d: %v", i, err)
		}
		if !bytes.Equal(got, ts.data[i]) {
			t.Fatalf("object of file %d: %d bytes differ from the %d sent", i, len(got), len(ts.data[i]))
		}
	}
	if ups, err := svc.S3.ListMultipartUploads(ctx, session.SessionPrefix(ts.id)); err != nil || len(ups) != 0 {
		t.Fatalf("multipart uploads left behind: %v (%v)", ups, err)
	}
}

func TestFinalizeMultiFileMultiPart(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 12*session.MiB, 1024, 10*session.MiB)
	ts.uploadAll(t, svc)
	res, err := finalize(svc, ts, "Castle "+ts.id.String()[:8])
	if err != nil || !res.Created {
		t.Fatalf("finalize = %+v, %v; want created", res, err)
	}
	assertOneMOC(t, svc, ts)
	wantParts := []string{"-3\"", "-1\"", "-2\""}
	for i, f := range res.MOC.Files {
		if !strings.HasSuffix(f.ETag, wantParts[i]) || !strings.HasPrefix(f.ETag, `"`) {
			t.Errorf("file %d ETag %s, want a quoted multipart ETag ending %s", i, f.ETag, wantParts[i])
		}
		if f.S3Key != ts.act.Files[i].S3Key || f.SizeBytes != ts.act.Files[i].SizeBytes {
			t.Errorf("file %d = %+v", i, f)
		}
	}

	// A later finalize replays the same MOC (HTTP answers 200).
	again, err := finalize(svc, ts, "Another title")
	if err != nil || again.Created || again.MOC.ID != res.MOC.ID || again.MOC.Slug != res.MOC.Slug ||
		len(again.MOC.Files) != 3 || again.MOC.Files[0].ETag != res.MOC.Files[0].ETag {
		t.Fatalf("replay = %+v, %v; want the first MOC", again, err)
	}
}

func TestSamePartTwiceKeepsOneRecordTheLatest(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	first := ts.uploadPart(t, svc, 0, 1)
	ts.data[0][0] ^= 0xff // the client resends part 1 with other bytes
	second := ts.uploadPart(t, svc, 0, 1)
	if first.ETag == second.ETag {
		t.Fatal("different bytes gave the same ETag")
	}
	if n := countRows(t, `SELECT count(*) FROM upload_parts WHERE file_id = $1 AND part_number = 1`, ts.act.Files[0].ID); n != 1 {
		t.Fatalf("part rows = %d, want 1", n)
	}
	var etag string
	must(t, pool().QueryRow(context.Background(), `SELECT etag FROM upload_parts WHERE file_id = $1`, ts.act.Files[0].ID).Scan(&etag))
	if etag != second.ETag {
		t.Fatalf("recorded ETag %s, want the latest %s", etag, second.ETag)
	}
	ts.uploadPart(t, svc, 0, 2)
	if _, err := finalize(svc, ts, "Resent "+ts.id.String()[:8]); err != nil {
		t.Fatal(err)
	}
	assertOneMOC(t, svc, ts) // the object holds the resent bytes
}

func TestIncompleteUploadListsMissingPartsAndReleasesTheLock(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 12*session.MiB, 100)
	ts.uploadAll(t, svc, "0/2", "1/1")
	_, err := finalize(svc, ts, "Incomplete")
	var inc *uploads.IncompleteError
	if !errors.As(err, &inc) {
		t.Fatalf("err = %v, want IncompleteError", err)
	}
	want := map[string][]int{ts.act.Files[0].ID.String(): {2}, ts.act.Files[1].ID.String(): {1}}
	if fmt.Sprint(inc.Missing) != fmt.Sprint(want) {
		t.Fatalf("missing = %v, want %v", inc.Missing, want)
	}
	if n := countRows(t, `SELECT count(*) FROM upload_sessions WHERE id = $1 AND status = 'active' AND finalizing_at IS NULL`, ts.id); n != 1 {
		t.Fatal("lock not released after an incomplete finalize")
	}
}

// The story's seed row, with a real TokenReview username:
// its finalizing_at is 10 minutes old, a stale lock that a new finalize takes over.
func TestStorySeedStaleLockFinalizes(t *testing.T) {
	svc, _ := newService(t)
	svc.Clock = nil // the real clock: the seed row's lock age is measured against it
	ctx := context.Background()
	owner := "system:serviceaccount:default:dev-user"
	must(t, execErr(pool().Exec(ctx, `DELETE FROM upload_sessions WHERE id = 'eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee'`)))
	if _, err := pool().Exec(ctx, `
		INSERT INTO upload_sessions (id, user_id, status, part_size_bytes, finalizing_at, expires_at, created_at, updated_at)
		VALUES (
		  'eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee',
		  $1,
		  'active',
		  5242880,
		  NOW() - INTERVAL '10 minutes', -- stale lock (>5 min)
		  NOW() + INTERVAL '20 minutes',
		  NOW() - INTERVAL '40 minutes',
		  NOW()
		)`, owner); err != nil {
		t.Fatalf("the story's seed SQL does not apply: %v", err)
	}
	res, err := svc.Finalize(ctx, uploads.FinalizeRequest{SessionID: uuid.MustParse("eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee"), Title: "Seeded MOC"})
	if err != nil || !res.Created || !res.TookOver {
		t.Fatalf("finalize of the seeded stale lock = %+v, %v; want created after a takeover", res, err)
	}
	if res.MOC.UserID != owner || res.MOC.Slug != "seeded-moc" {
		t.Fatalf("MOC = %+v", res.MOC)
	}
}

// The staleness boundary on PostgreSQL's clock, pinned so the lock's age is
// exact: a lock 4m59.999s old is fresh (409 FINALIZE_IN_PROGRESS), exactly 5m
// is still fresh, and 5m00.001s is stale and taken over.
func TestStaleLockBoundary(t *testing.T) {
	at := time.Date(2026, 1, 25, 12, 0, 0, 0, time.UTC)
	svc, _ := newService(t)
	svc.DB = testenv.OpenStore(t, dbURL, at)
	ts := activate(t, svc, 100)
	ts.uploadAll(t, svc)
	setLock := func(age time.Duration) {
		if _, err := pool().Exec(context.Background(), `UPDATE upload_sessions SET status = 'finalizing', finalizing_at = $2 WHERE id = $1`,
			ts.id, at.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	setLock(4*time.Minute + 59*time.Second + 999*time.Millisecond)
	_, err := finalize(svc, ts, "Boundary")
	var inProgress *uploads.InProgressError
	if !errors.As(err, &inProgress) {
		t.Fatalf("4m59.999s-old lock: err = %v, want in progress", err)
	}
	if inProgress.RetryAfter != time.Second {
		t.Errorf("retryAfter = %s, want 1s (the lock goes stale in 1 ms)", inProgress.RetryAfter)
	}
	setLock(5 * time.Minute)
	if _, err := finalize(svc, ts, "Boundary"); !errors.As(err, &inProgress) {
		t.Fatalf("exactly 5m-old lock: err = %v, want still fresh", err)
	}
	setLock(5*time.Minute + time.Millisecond)
	res, err := finalize(svc, ts, "Boundary")
	if err != nil || !res.Created || !res.TookOver {
		t.Fatalf("5m00.001s-old lock: %+v, %v; want taken over and created", res, err)
	}
}

// Many finalizers find the same stale lock at once: exactly one wins and
// creates the MOC; the others are told it is in progress or get the replay.
func TestConcurrentFinalizersOfAStaleSessionMakeOneMOC(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB, 200)
	ts.uploadAll(t, svc)
	if _, err := pool().Exec(context.Background(), `UPDATE upload_sessions SET finalizing_at = now() - interval '10 minutes' WHERE id = $1`,
		ts.id); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, tookOver, others := 0, 0, 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := finalize(svc, ts, "Race "+ts.id.String()[:8])
			mu.Lock()
			defer mu.Unlock()
			var ip *uploads.InProgressError
			switch {
			case err == nil && res.Created:
				created++
				if res.TookOver {
					tookOver++
				}
			case err == nil || errors.As(err, &ip):
				others++
			default:
				t.Errorf("finalizer: %v", err)
			}
		}()
	}
	wg.Wait()
	if created != 1 || tookOver != 1 || others != n-1 {
		t.Fatalf("created=%d tookOver=%d others=%d; want 1, 1, %d", created, tookOver, others, n-1)
	}
	assertOneMOC(t, svc, ts)
}

// Each crash point of the finalize path: the finalize stops there (an injected
// failure that, like a crash, leaves the lock in place); once the lock is
// stale, the next finalize converges to exactly one MOC with every file, and
// S3 uploads already completed are recognised, not completed twice.
func TestFinalizeConvergesAfterACrashAtEveryPoint(t *testing.T) {
	points := []string{
		"finalize/after-lock",
		"finalize/after-s3-complete",   // S3 completed the first file, its ETag not recorded
		"finalize/after-file-complete", // after the first of three completions
		"finalize/after-all-complete",  // every S3 upload completed, nothing committed
		"finalize/tx-after-insert-moc", // inside the transaction: rolled back
		"finalize/after-commit",        // committed, status not yet reported
	}
	for _, fp := range points {
		t.Run(strings.TrimPrefix(fp, "finalize/"), func(t *testing.T) {
			svc, _ := newService(t)
			ts := activate(t, svc, 6*session.MiB, 100, 5*session.MiB)
			ts.uploadAll(t, svc)
			failpoint.Enable(fp, "error")
			_, err := finalize(svc, ts, "Crash "+ts.id.String()[:8])
			failpoint.Disable(fp)
			if !errors.Is(err, failpoint.ErrInjected) {
				t.Fatalf("first finalize: err = %v, want the injected failure", err)
			}
			if fp == "finalize/tx-after-insert-moc" {
				if n := countRows(t, `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, ts.id); n != 0 {
					t.Fatalf("rolled-back transaction left %d moc_instructions rows", n)
				}
			}
			if fp != "finalize/after-commit" {
				// Until the lock is stale, others are turned away.
				var ip *uploads.InProgressError
				if _, err := finalize(svc, ts, "Crash "+ts.id.String()[:8]); !errors.As(err, &ip) {
					t.Fatalf("finalize while the crashed lock is fresh: %v, want in progress", err)
				}
				ageLock(t, ts.id, 5*time.Minute+time.Millisecond)
			}
			res, err := finalize(svc, ts, "Crash "+ts.id.String()[:8])
			if err != nil {
				t.Fatalf("finalize after the crash: %v", err)
			}
			wantCreated := fp != "finalize/after-commit"
			if res.Created != wantCreated {
				t.Fatalf("created = %v, want %v", res.Created, wantCreated)
			}
			assertOneMOC(t, svc, ts)
		})
	}
}

// installConflictTrigger makes PostgreSQL raise code for the first n inserts
// of a MOC with the given title: a real SQLSTATE from the server, not an
// edited return value. A sequence counts, since a rolled-back transaction
// cannot.
func installConflictTrigger(t *testing.T, title, code string, n int) {
	t.Helper()
	ctx := context.Background()
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	seq, fn, trg := "fail_seq_"+suffix, "fail_fn_"+suffix, "fail_trg_"+suffix
	stmts := []string{
		fmt.Sprintf(`CREATE SEQUENCE %s`, seq),
		fmt.Sprintf(`CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF NEW.title = %s AND nextval('%s') <= %d THEN
					RAISE EXCEPTION 'injected %s' USING ERRCODE = '%s';
				END IF;
				RETURN NEW;
			END $$`, fn, quote(title), seq, n, code, code),
		fmt.Sprintf(`CREATE TRIGGER %s BEFORE INSERT ON moc_instructions FOR EACH ROW EXECUTE FUNCTION %s()`, trg, fn),
	}
	for _, s := range stmts {
		if _, err := pool().Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		must(t, execErr(pool().Exec(ctx, fmt.Sprintf(`DROP TRIGGER %s ON moc_instructions; DROP FUNCTION %s(); DROP SEQUENCE %s`, trg, fn, seq))))
	})
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func TestTransactionRetriesSerializationFailuresAndDeadlocks(t *testing.T) {
	for _, tc := range []struct {
		code     string
		failures int
		wantOK   bool
	}{
		{"40001", 1, true},
		{"40001", 2, true}, // third attempt commits
		{"40001", 3, false},
		{"40P01", 2, true},
		{"40P01", 3, false},
	} {
		t.Run(fmt.Sprintf("%s×%d", tc.code, tc.failures), func(t *testing.T) {
			svc, _ := newService(t)
			ts := activate(t, svc, 100)
			ts.uploadAll(t, svc)
			title := "Conflict " + ts.id.String()
			installConflictTrigger(t, title, tc.code, tc.failures)
			res, err := finalize(svc, ts, title)
			if tc.wantOK {
				if err != nil || !res.Created {
					t.Fatalf("finalize = %v, want created after %d retries", err, tc.failures)
				}
				assertOneMOC(t, svc, ts)
				return
			}
			var ie *uploads.InternalError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("err = %v, want an internal error (500) carrying %s", err, tc.code)
			}
			if n := countRows(t, `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, ts.id); n != 0 {
				t.Fatalf("%d moc_instructions rows committed", n)
			}
			if n := countRows(t, `SELECT count(*) FROM upload_sessions WHERE id = $1 AND status = 'active' AND finalizing_at IS NULL`, ts.id); n != 1 {
				t.Fatal("lock not released after the failed transaction")
			}
			// And it finalizes once the database stops refusing.
			if res, err := finalize(svc, ts, title); err != nil || !res.Created {
				t.Fatalf("finalize after the failures: %v", err)
			}
		})
	}
}

func TestSlugConflictSuggestsTheFirstFreeSlug(t *testing.T) {
	svc, _ := newService(t)
	mk := func(owner string) *testSession {
		ts := activate(t, svc, 10)
		if owner != "" {
			must(t, execErr(pool().Exec(context.Background(), `UPDATE upload_sessions SET user_id = $2 WHERE id = $1`, ts.id, owner)))
			ts.owner = owner
		}
		ts.uploadAll(t, svc)
		return ts
	}
	a := mk("")
	if _, err := finalize(svc, a, "Castle"); err != nil {
		t.Fatal(err)
	}
	b := mk(a.owner)
	_, err := finalize(svc, b, "Castle")
	var sc *uploads.SlugConflictError
	if !errors.As(err, &sc) || sc.Slug != "castle" || sc.Suggested != "castle-1" {
		t.Fatalf("err = %v, want conflict suggesting castle-1", err)
	}
	// The auto-append flow lands on the suggestion…
	if res, err := finalize(svc, b, "Castle (1)"); err != nil || res.MOC.Slug != "castle-1" {
		t.Fatalf("auto-append: %+v, %v", res.MOC, err)
	}
	// …and the next conflict suggests castle-2.
	c := mk(a.owner)
	if _, err := finalize(svc, c, "CASTLE!"); !errors.As(err, &sc) || sc.Suggested != "castle-2" {
		t.Fatalf("err = %v, want castle-2", err)
	}
	// Slugs are per owner.
	d := mk("system:serviceaccount:other:" + uuid.NewString()[:8])
	if res, err := finalize(svc, d, "Castle"); err != nil || res.MOC.Slug != "castle" {
		t.Fatalf("another owner's castle: %+v, %v", res.MOC, err)
	}
}
