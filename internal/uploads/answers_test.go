package uploads_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// The answers of a finalize or a part that met another party's step: each
// race below is driven to the same interleaving every run by failpoints.

// A holder paused past its window (here: its lock aged) is overtaken by a
// finalize that makes the MOC; when it resumes it must answer with that MOC
// (the same session's), not see its own slug as taken (409 SLUG_CONFLICT).
func TestOvertakenHolderAnswersItsSessionsMOC(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	title := "Overtaken " + ts.id.String()[:8]
	g := holdAt(t, "finalize/before-slug")
	paused := finalizeAsync(svc, ts, title)
	g.wait(t)
	ageLock(t, ts.id, 6*time.Minute)
	taker, err := finalize(svc, ts, title)
	if err != nil || !taker.Created || !taker.TookOver {
		t.Fatalf("the taker: %+v, %v; want the MOC, taken over", taker, err)
	}
	g.release()
	r := receive(t, paused)
	if r.err != nil || r.res.Created || r.res.MOC.ID != taker.MOC.ID {
		t.Fatalf("the overtaken holder: %+v, %v; want the taker's MOC as a replay (200)", r.res, r.err)
	}
	assertOneMOC(t, svc, ts)
}

// An overtaken holder that finds an upload lost, where the taker was a
// delete: FailLocked finds the lock gone and the answer is 404 (the session
// is gone), not 409 UPLOAD_LOST.
func TestOvertakenHolderWhoseTakerWasADeleteAnswersNotFound(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	f := ts.act.Files[0]
	must(t, svc.S3.AbortMultipartUpload(context.Background(), f.S3Key, f.S3UploadID)) // lost behind the operator's back
	g := holdAt(t, "finalize/before-fail")
	paused := finalizeAsync(svc, ts, "Lost "+ts.id.String()[:8])
	g.wait(t)
	ageLock(t, ts.id, 6*time.Minute)
	must(t, svc.Discard(context.Background(), logr.Discard(), ts.id))
	g.release()
	if r := receive(t, paused); !errors.Is(r.err, uploads.ErrSessionNotFound) {
		t.Fatalf("the overtaken holder: %+v, %v; want not found (404)", r.res, r.err)
	}
}

// A finalize that failed (S3 refused a completion) and whose lock was
// meanwhile taken over by one that made the MOC answers with that MOC, not
// with what it met before (503 S3_UNAVAILABLE for a session that is
// finalized): its release finds the lock no longer its own.
func TestFailedFinalizeWhoseLockWasTakenOverAnswersTheMOC(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	title := "Released " + ts.id.String()[:8]
	var failed atomic.Bool
	failpoint.EnableFunc("finalize/before-s3-complete", func() error {
		if failed.CompareAndSwap(false, true) {
			return &uploads.S3Error{Err: errors.New("S3 is down")}
		}
		return nil
	})
	t.Cleanup(func() { failpoint.Disable("finalize/before-s3-complete") })
	g := holdAt(t, "finalize/before-release")
	paused := finalizeAsync(svc, ts, title)
	g.wait(t)
	ageLock(t, ts.id, 6*time.Minute)
	taker, err := finalize(svc, ts, title)
	if err != nil || !taker.Created {
		t.Fatalf("the taker: %+v, %v", taker, err)
	}
	g.release()
	if r := receive(t, paused); r.err != nil || r.res.MOC.ID != taker.MOC.ID {
		t.Fatalf("the overtaken holder: %+v, %v; want the taker's MOC (200)", r.res, r.err)
	}
}

// A finalize that reaches the lock after a delete removed the session's rows
// answers 404, not 500.
func TestFinalizeMeetingADeleteAtTheLockIsNotFound(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	g := holdAt(t, "finalize/before-lock")
	done := finalizeAsync(svc, ts, "Gone "+ts.id.String()[:8])
	g.wait(t)
	must(t, svc.Discard(context.Background(), logr.Discard(), ts.id))
	g.release()
	if r := receive(t, done); !errors.Is(r.err, uploads.ErrSessionNotFound) {
		t.Fatalf("finalize after the delete: %+v, %v; want not found (404)", r.res, r.err)
	}
}

// A finalize that loses the lock to one that then fails and releases it
// reads the session active with no lock: that is "in progress, ask again
// soon" (409 FINALIZE_IN_PROGRESS), not 409 SESSION_NOT_ACTIVE with status
// "active".
func TestFinalizeLosingTheLockToOneThatReleasesIsInProgress(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc, "0/2")
	holder := holdAt(t, "finalize/after-lock")
	first := finalizeAsync(svc, ts, "First "+ts.id.String()[:8])
	holder.wait(t)
	refused := holdAt(t, "finalize/lock-refused")
	second := finalizeAsync(svc, ts, "Second "+ts.id.String()[:8])
	refused.wait(t)
	holder.release()
	var inc *uploads.IncompleteError
	if r := receive(t, first); !errors.As(r.err, &inc) {
		t.Fatalf("the holder: %v; want INCOMPLETE_UPLOAD (and its lock released)", r.err)
	}
	refused.release()
	var ip *uploads.InProgressError
	if r := receive(t, second); !errors.As(r.err, &ip) || ip.RetryAfter > 2*time.Second {
		t.Fatalf("the finalize that lost the lock: %v; want FINALIZE_IN_PROGRESS with a short retryAfter", r.err)
	}
}

// Parts that keep changing between the listing and the completion (a direct
// session's client still sending them) end, after three listings, in
// INCOMPLETE_UPLOAD naming them, not in a 500.
func TestPartsThatKeepChangingAnswerIncomplete(t *testing.T) {
	svc, _ := newService(t)
	ts := activateDirect(t, svc, 6*session.MiB)
	f := ts.act.Files[0]
	changes := 0
	failpoint.EnableFunc("finalize/before-s3-complete", func() error {
		changes++
		b := make([]byte, 5*session.MiB)
		_, _ = rand.Read(b)
		_, err := svc.S3.UploadPart(context.Background(), f.S3Key, f.S3UploadID, 1, bytes.NewReader(b), int64(len(b)), objectstore.Checksums{})
		return err
	})
	t.Cleanup(func() { failpoint.Disable("finalize/before-s3-complete") })
	_, err := finalize(svc, ts, "Changing "+ts.id.String()[:8])
	var inc *uploads.IncompleteError
	if !errors.As(err, &inc) || len(inc.Missing) != 1 || len(inc.Missing[f.ID.String()]) != 1 || inc.Missing[f.ID.String()][0] != 1 {
		t.Fatalf("finalize while part 1 keeps changing: %v; want INCOMPLETE_UPLOAD naming part 1", err)
	}
	if changes != 3 {
		t.Fatalf("the part changed %d times before the answer; want 3 listings", changes)
	}
}

// A part PUT that meets the upload an interrupted finalize completed (S3
// completed it, the record of it failed, the lock was released) answers 409
// SESSION_NOT_ACTIVE, not 400 INVALID_PART or 503: S3 refuses such a part with
// NoSuchUpload, or (versitygw) answers before reading the body and closes the
// connection, which the SDK sees as resets.
func TestPartAfterAnUnrecordedCompletionIsNotActive(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	failpoint.EnableFunc("finalize/after-s3-complete", func() error { return errors.New("the record of the completion failed") })
	_, err := finalize(svc, ts, "Unrecorded "+ts.id.String()[:8])
	failpoint.Disable("finalize/after-s3-complete")
	if err == nil {
		t.Fatal("finalize succeeded with its completion record failing")
	}
	f := ts.act.Files[0]
	for range 3 { // whichever way S3 refuses it
		_, err = svc.StorePart(context.Background(), uploads.PartUpload{Session: ts.act.Session, File: f, PartNumber: 1,
			Body: bytes.NewReader(ts.data[0][:5*session.MiB]), Size: 5 * session.MiB})
		var na *uploads.NotActiveError
		if !errors.As(err, &na) {
			t.Fatalf("PUT to a completed upload: %v; want SESSION_NOT_ACTIVE (409)", err)
		}
	}
}

// A TryLock whose reply is lost (the UPDATE committed, the answer never came)
// must not lock the session out for STALE_LOCK_AFTER: the finalize releases
// by its token on the error path, and the next finalize proceeds.
func TestLostReplyToTheLockDoesNotLockTheSessionOut(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	title := "Reply " + ts.id.String()[:8]
	failpoint.EnableFunc("finalize/lock-reply", func() error { return errors.New("connection reset: the reply was lost") })
	_, err := finalize(svc, ts, title)
	failpoint.Disable("finalize/lock-reply")
	var ie *uploads.InternalError
	if !errors.As(err, &ie) {
		t.Fatalf("finalize with its lock's reply lost: %v; want an internal error", err)
	}
	if res, err := finalize(svc, ts, title); err != nil || !res.Created {
		t.Fatalf("the next finalize: %+v, %v; want the MOC, not a session locked out", res, err)
	}
	assertOneMOC(t, svc, ts)
}

// A holder that stopped (died) after expiresAt leaves a finalizing session
// with a stale lock that no finalize may take any more (the lease is judged
// on PostgreSQL's clock against expiresAt): the session expires, and a
// finalize answers 410, instead of "in progress" for ever.
func TestStaleLockPastExpiryExpires(t *testing.T) {
	svc, clk := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	failpoint.Enable("finalize/after-lock", "error") // the holder dies with the lock
	_, err := finalize(svc, ts, "Late "+ts.id.String()[:8])
	failpoint.Disable("finalize/after-lock")
	if !errors.Is(err, failpoint.ErrInjected) {
		t.Fatalf("the holder: %v", err)
	}
	ageLock(t, ts.id, 6*time.Minute)
	pastExpiry(t, clk, ts.id)
	if _, err := finalize(svc, ts, "Late "+ts.id.String()[:8]); !errors.Is(err, uploads.ErrExpired) {
		t.Fatalf("finalize of a finalizing session past expiry with a stale lock: %v; want expired (410)", err)
	}
	if ok, err := svc.Expire(context.Background(), logr.Discard(), ts.id); !ok || err != nil {
		t.Fatalf("expire = %v, %v; want the stale finalizing session expired", ok, err)
	}
	assertNothingLeft(t, svc, ts, "expired")
}
