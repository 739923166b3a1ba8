package uploads_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

type finalizeResult struct {
	res uploads.FinalizeResult
	err error
}

// finalizeAsync starts a finalize and returns where its result will arrive.
func finalizeAsync(svc *uploads.Service, ts *testSession, title string) <-chan finalizeResult {
	done := make(chan finalizeResult, 1)
	go func() {
		res, err := finalize(svc, ts, title)
		done <- finalizeResult{res, err}
	}()
	return done
}

func receive(t *testing.T, done <-chan finalizeResult) finalizeResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("the finalize did not return")
		return finalizeResult{}
	}
}

// lockAge reads a session's lock age on PostgreSQL's clock.
func lockAge(t *testing.T, ts *testSession) time.Duration {
	t.Helper()
	var micros *int64
	if err := pool().QueryRow(context.Background(),
		`SELECT (extract(epoch FROM now() - finalizing_at) * 1000000)::bigint FROM upload_sessions WHERE id = $1`, ts.id).Scan(&micros); err != nil {
		t.Fatal(err)
	}
	if micros == nil {
		t.Fatal("no lock recorded")
	}
	return time.Duration(*micros) * time.Microsecond
}

// A finalize that runs past STALE_LOCK_AFTER (here held for 2.5 s with a 1 s
// window, as many large S3 completions would) keeps its lock: it renews it,
// so another replica's finalize is told to wait, again and again, and the
// holder's finalize is the one that creates the MOC.
func TestLiveHolderIsNeverTakenOver(t *testing.T) {
	holder, _ := newService(t)
	holder.StaleLockAfter = time.Second
	other, _ := newService(t)
	other.StaleLockAfter = time.Second
	ts := activate(t, holder, 6*session.MiB, 100)
	ts.uploadAll(t, holder)
	title := "Long " + ts.id.String()[:8]

	g := holdAt(t, "finalize/after-lock")
	done := finalizeAsync(holder, ts, title)
	g.wait(t)
	held := time.Now()
	for time.Since(held) < 2500*time.Millisecond {
		_, err := finalize(other, ts, title)
		var ip *uploads.InProgressError
		if !errors.As(err, &ip) {
			t.Fatalf("another replica's finalize %s into the hold: %v; want FINALIZE_IN_PROGRESS", time.Since(held), err)
		}
		// On PostgreSQL's clock, since the last renewal: the holder renews
		// every 100 ms, but two busy cores can delay a renewal by hundreds of
		// them; what matters is that the lock never gets as old as the window
		// (a holder that does not renew fails this within the 2.5 s hold).
		if age := lockAge(t, ts); age >= holder.StaleLockAfter {
			t.Fatalf("%s into the hold the lock is %s old: the holder does not renew it", time.Since(held), age)
		}
		time.Sleep(200 * time.Millisecond) // probe the whole window, past the 1 s staleness
	}
	g.release()
	r := receive(t, done)
	if r.err != nil || !r.res.Created || r.res.TookOver {
		t.Fatalf("holder: %+v, %v; want created by the holder", r.res, r.err)
	}
	assertOneMOC(t, holder, ts)
}

// Fencing: once a renewal finds the lock gone (another finalize took it),
// the holder completes nothing more in S3 and answers "in progress".
func TestHolderStopsWhenItsLockIsTakenOver(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB, 100)
	ts.uploadAll(t, svc)
	g := holdAt(t, "finalize/after-lock")
	done := finalizeAsync(svc, ts, "Fenced "+ts.id.String()[:8])
	g.wait(t)
	// Another finalize holds the lock now (as after a takeover).
	if _, err := pool().Exec(context.Background(),
		`UPDATE upload_sessions SET finalize_token = gen_random_uuid(), finalizing_at = now() WHERE id = $1`, ts.id); err != nil {
		t.Fatal(err)
	}
	g.release()
	r := receive(t, done)
	var ip *uploads.InProgressError
	if !errors.As(r.err, &ip) {
		t.Fatalf("holder that lost its lock: %+v, %v; want FINALIZE_IN_PROGRESS", r.res, r.err)
	}
	ctx := context.Background()
	for i, f := range ts.act.Files {
		if _, ok, err := svc.S3.HeadObject(ctx, f.S3Key); err != nil || ok {
			t.Fatalf("file %d: object exists=%v (%v): the fenced holder completed an S3 upload", i, ok, err)
		}
	}
	ups, err := svc.S3.ListMultipartUploads(ctx, session.SessionPrefix(ts.id))
	if err != nil || len(ups) != len(ts.act.Files) {
		t.Fatalf("multipart uploads = %v, %v; want all %d still open", ups, err, len(ts.act.Files))
	}
	if n := countRows(t, `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, ts.id); n != 0 {
		t.Fatalf("%d MOCs", n)
	}
}

// Two live holders, each with its own connection and lease: the first is cut
// off from PostgreSQL while it works, so it cannot renew; it stops before its
// lock can go stale; once it is stale the second takes it over and creates
// the MOC; the first, back, answers with that MOC (200), not an error.
func TestCutOffHolderStopsAndAnswersTheOthersMOC(t *testing.T) {
	ctx := context.Background()
	px, viaProxy := proxiedDatabase(t, "sslmode=disable&connect_timeout=1")
	proxied, err := store.OpenWithOptions(ctx, viaProxy, store.Options{CallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer proxied.Close()

	first, _ := newService(t)
	first.DB, first.StaleLockAfter = proxied, time.Second
	second, _ := newService(t)
	second.StaleLockAfter = time.Second
	ts := activate(t, second, 6*session.MiB, 100)
	ts.uploadAll(t, second)
	title := "Partitioned " + ts.id.String()[:8]

	g := holdAt(t, "finalize/after-lock")
	done := finalizeAsync(first, ts, title)
	g.wait(t)
	px.Disable()
	var created uploads.FinalizeResult
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := finalize(second, ts, title)
		var ip *uploads.InProgressError
		if err == nil {
			created = res
			break
		}
		if !errors.As(err, &ip) || time.Now().After(deadline) {
			t.Fatalf("second holder: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !created.Created || !created.TookOver {
		t.Fatalf("second holder: %+v; want created after taking over the stale lock", created)
	}
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	g.release()
	r := receive(t, done)
	if r.err != nil || r.res.Created || r.res.MOC.ID != created.MOC.ID {
		t.Fatalf("first holder, back: %+v, %v; want the second's MOC as a replay", r.res, r.err)
	}
	assertOneMOC(t, second, ts)
}

// The commit checks the lease before it writes anything: a holder that was
// overtaken while it waited to commit (its lock aged past the window, another
// finalize took it over and committed) gets the committed MOC (200), not a
// primary-key violation (500).
func TestCommitAfterBeingOvertakenAnswersTheReplay(t *testing.T) {
	first, _ := newService(t)
	second, _ := newService(t)
	ts := activate(t, first, 6*session.MiB, 100)
	ts.uploadAll(t, first)
	title := "Overtaken " + ts.id.String()[:8]

	g := holdAt(t, "finalize/after-all-complete")
	done := finalizeAsync(first, ts, title)
	g.wait(t)
	ageLock(t, ts.id, 6*time.Minute) // the first stalled long enough for its lock to go stale
	created, err := finalize(second, ts, title)
	if err != nil || !created.Created || !created.TookOver {
		t.Fatalf("second: %+v, %v; want created after a takeover", created, err)
	}
	g.release()
	r := receive(t, done)
	if r.err != nil || r.res.Created || r.res.MOC.ID != created.MOC.ID || len(r.res.MOC.Files) != 2 {
		t.Fatalf("first, after being overtaken: %+v, %v; want the committed MOC as a replay", r.res, r.err)
	}
	assertOneMOC(t, first, ts)
}

// Staleness is judged on PostgreSQL's clock: a replica whose clock runs ten
// minutes ahead does not take over a lock its holder took a moment ago.
func TestSkewedReplicaClockDoesNotTakeOverEarly(t *testing.T) {
	holder, _ := newService(t)
	ts := activate(t, holder, 100)
	ts.uploadAll(t, holder)
	title := "Skew " + ts.id.String()[:8]
	g := holdAt(t, "finalize/after-lock")
	done := finalizeAsync(holder, ts, title)
	g.wait(t)
	for _, skew := range []time.Duration{10 * time.Minute, -10 * time.Minute} {
		skewed, _ := newService(t)
		skewed.Clock = &clock{t: time.Now().Add(skew)}
		_, err := finalize(skewed, ts, title)
		var ip *uploads.InProgressError
		if !errors.As(err, &ip) {
			t.Fatalf("replica %s off: %v; want FINALIZE_IN_PROGRESS", skew, err)
		}
	}
	g.release()
	if r := receive(t, done); r.err != nil || !r.res.Created {
		t.Fatalf("holder: %+v, %v", r.res, r.err)
	}
}

// While the holder renews, FINALIZE_IN_PROGRESS asks for a short poll, not for
// the time until the lock would be stale.
func TestInProgressAsksForAShortPoll(t *testing.T) {
	holder, _ := newService(t)
	ts := activate(t, holder, 100)
	ts.uploadAll(t, holder)
	g := holdAt(t, "finalize/after-lock")
	done := finalizeAsync(holder, ts, "Poll "+ts.id.String()[:8])
	g.wait(t)
	_, err := finalize(holder, ts, "Poll "+ts.id.String()[:8])
	var ip *uploads.InProgressError
	if !errors.As(err, &ip) || ip.RetryAfter != 2*time.Second {
		t.Fatalf("= %v; want FINALIZE_IN_PROGRESS with retryAfter 2s", err)
	}
	g.release()
	if r := receive(t, done); r.err != nil {
		t.Fatal(r.err)
	}
}
