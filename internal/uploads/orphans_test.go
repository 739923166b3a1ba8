package uploads_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"k8s.io/utils/ptr"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// An activation whose caller gives up after S3 created the upload (a
// reconcile cut short by the manager's shutdown, found by the soak) still
// records the upload or aborts it: no upload is left that nobody knows of.
func TestActivationCutShortStillRecordsItsUpload(t *testing.T) {
	svc, _ := newService(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failpoint.EnableFunc("activate/before-record-upload", func() error { cancel(); return nil })
	defer failpoint.Disable("activate/before-record-upload")
	id := uuid.New()
	_, err := svc.Activate(ctx, uploads.Request{SessionID: id, Owner: "system:serviceaccount:test:cut", PartSizeBytes: ptr.To(5 * session.MiB),
		Files: []session.File{{Name: "a.pdf", ContentType: "application/pdf", SizeBytes: 6 * session.MiB}}})
	t.Logf("activate with its context canceled after S3's create: %v", err)
	files, err := db.Files(context.Background(), id)
	if err != nil || len(files) != 1 {
		t.Fatalf("files %v: %v", files, err)
	}
	ups, err := svc.S3.ListMultipartUploads(context.Background(), session.SessionPrefix(id))
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 1 || ups[0].UploadID != files[0].S3UploadID {
		t.Fatalf("S3 holds %v; recorded %q: an upload nobody recorded is left behind", ups, files[0].S3UploadID)
	}
}

// The orphan sweep aborts uploads no session can use (a surplus upload of a
// finalized session, an upload under a session that no longer exists) once
// they are older than the minimum age, and keeps the recorded uploads of live
// sessions and anything younger.
func TestOrphanSweepAbortsOnlyUploadsNoSessionCanUse(t *testing.T) {
	ctx := context.Background()
	svc, clk := newService(t)
	live := activate(t, svc, 6*session.MiB)
	done := activate(t, svc, 1024)
	done.uploadAll(t, svc)
	if _, err := finalize(svc, done, "Swept "+done.id.String()[:8]); err != nil {
		t.Fatal(err)
	}
	surplus := mustCreate(t, svc, done.act.Files[0].S3Key)                  // an activation that never recorded it
	gone := mustCreate(t, svc, session.SessionPrefix(uuid.New())+"x/y.pdf") // a session deleted meanwhile

	// Young: kept, whatever it is.
	if n, err := svc.SweepOrphanedUploads(ctx, logr.Discard(), time.Hour); err != nil || n != 0 {
		t.Fatalf("sweep of young uploads aborted %d (%v); want 0", n, err)
	}
	assertUploads(t, svc, map[objectstore.Upload]bool{surplus: true, gone: true})

	clk.Add(2 * time.Hour) // the sweep's clock only: the live session has not expired
	_, err := svc.SweepOrphanedUploads(ctx, logr.Discard(), time.Hour)
	clk.Add(-2 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := live.act.Files[0]
	assertUploads(t, svc, map[objectstore.Upload]bool{surplus: false, gone: false, {Key: f.S3Key, UploadID: f.S3UploadID}: true})
	live.uploadAll(t, svc)
	if _, err := finalize(svc, live, "Kept "+live.id.String()[:8]); err != nil {
		t.Fatalf("the live session's upload was swept: %v", err)
	}
}

func mustCreate(t *testing.T, svc *uploads.Service, key string) objectstore.Upload {
	t.Helper()
	id, err := svc.S3.CreateMultipartUpload(context.Background(), key, "application/pdf", "attachment")
	if err != nil {
		t.Fatal(err)
	}
	return objectstore.Upload{Key: key, UploadID: id}
}

// assertUploads checks which uploads S3 still has in progress.
func assertUploads(t *testing.T, svc *uploads.Service, want map[objectstore.Upload]bool) {
	t.Helper()
	ups, err := svc.S3.ListMultipartUploads(context.Background(), session.SessionsPrefix)
	if err != nil {
		t.Fatal(err)
	}
	have := map[objectstore.Upload]bool{}
	for _, u := range ups {
		have[objectstore.Upload{Key: u.Key, UploadID: u.UploadID}] = true
	}
	for u, exists := range want {
		if have[u] != exists {
			t.Errorf("upload %s %s: in progress %v, want %v", u.Key, u.UploadID, have[u], exists)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// putObject writes an object straight to the bucket, as a completion that
// lands after everything else would leave one.
func putObject(t *testing.T, svc *uploads.Service, key string) {
	t.Helper()
	if _, err := svc.S3.Client.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: &svc.S3.Bucket, Key: &key, Body: strings.NewReader("late"), ContentLength: ptr.To(int64(4))}); err != nil {
		t.Fatal(err)
	}
}

func objectExists(t *testing.T, svc *uploads.Service, key string) bool {
	t.Helper()
	_, ok, err := svc.S3.HeadObject(context.Background(), key)
	must(t, err)
	return ok
}

// A session failed because an upload was lost after a finalize had completed
// another file: the replica stops (crashes) between marking the session failed
// and removing what it holds. The removal is recorded as pending with the
// failure, so the next sweep (or the resource's reconcile) removes the
// completed object; before, nothing ever did: the object stayed for good.
func TestFailedSessionsRemovalIsFinishedAfterACut(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB, 100)
	ts.uploadAll(t, svc)
	completions := 0
	failpoint.EnableFunc("finalize/before-s3-complete", func() error {
		if completions++; completions == 2 {
			return &uploads.S3Error{Err: errors.New("S3 is down")} // file 0 is complete, file 1 is not
		}
		return nil
	})
	_, err := finalize(svc, ts, "Cut "+ts.id.String()[:8])
	failpoint.Disable("finalize/before-s3-complete")
	var s3e *uploads.S3Error
	if !errors.As(err, &s3e) || !objectExists(t, svc, ts.act.Files[0].S3Key) {
		t.Fatalf("first finalize: %v; want S3 unavailable after completing file 0", err)
	}
	f := ts.act.Files[1]
	must(t, svc.S3.AbortMultipartUpload(ctx, f.S3Key, f.S3UploadID)) // lost behind the operator's back
	failpoint.Enable("finalize/after-fail", "error")                 // the replica dies right after marking it failed
	_, err = finalize(svc, ts, "Cut "+ts.id.String()[:8])
	failpoint.Disable("finalize/after-fail")
	if !errors.Is(err, failpoint.ErrInjected) {
		t.Fatalf("second finalize: %v; want it stopped right after failing the session", err)
	}
	if n := countRows(t, `SELECT count(*) FROM upload_sessions WHERE id = $1 AND status = 'failed' AND s3_removal_pending`, ts.id); n != 1 {
		t.Fatal("the session is not failed with its removal pending")
	}
	if !objectExists(t, svc, ts.act.Files[0].S3Key) {
		t.Fatal("the object went with the crash: the scenario did not happen")
	}
	n, err := svc.FinishRemovals(ctx, logr.Discard(), 1000)
	if err != nil || n < 1 {
		t.Fatalf("FinishRemovals = %d, %v", n, err)
	}
	assertNothingLeft(t, svc, ts, "failed")
	if n := countRows(t, `SELECT count(*) FROM upload_sessions WHERE id = $1 AND s3_removal_pending`, ts.id); n != 0 {
		t.Fatal("the removal is still pending after it was done")
	}
}

// The sweep deletes objects under sessions/ that belong to no session that
// may still use them — a session with no row, one that failed or expired —
// once they are older than the minimum age; it keeps those of live and
// finalized sessions, those a resource reports Finalized (whatever PostgreSQL
// lost), and anything younger.
func TestOrphanSweepDeletesObjectsOfNoLiveSession(t *testing.T) {
	ctx := context.Background()
	svc, clk := newService(t)
	noRow := session.SessionPrefix(uuid.New()) + "f/late.pdf"
	putObject(t, svc, noRow)
	lostID := uuid.New() // its rows lost by PostgreSQL; a resource still reports it Finalized
	lostByPostgreSQL := session.SessionPrefix(lostID) + "f/castle.pdf"
	putObject(t, svc, lostByPostgreSQL)
	keep := map[uuid.UUID]bool{lostID: true}
	expired := activate(t, svc, 100)
	pastExpiry(t, clk, expired.id)
	if ok, err := svc.Expire(ctx, logr.Discard(), expired.id); !ok || err != nil {
		t.Fatalf("expire: %v, %v", ok, err)
	}
	clk.Add(-2 * time.Hour)
	lateAfterExpiry := expired.act.Files[0].S3Key
	putObject(t, svc, lateAfterExpiry)
	live := activate(t, svc, 100)
	liveObject := live.act.Files[0].S3Key
	putObject(t, svc, liveObject) // as a finalize interrupted after S3's completion leaves it
	done := activate(t, svc, 100)
	done.uploadAll(t, svc)
	if _, err := finalize(svc, done, "Kept "+done.id.String()[:8]); err != nil {
		t.Fatal(err)
	}

	if n, err := svc.SweepOrphanedObjects(ctx, logr.Discard(), time.Hour, keep); err != nil || n != 0 {
		t.Fatalf("sweep of young objects deleted %d (%v); want 0", n, err)
	}
	clk.Add(2 * time.Hour) // the sweep's clock only
	n, err := svc.SweepOrphanedObjects(ctx, logr.Discard(), time.Hour, keep)
	clk.Add(-2 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{noRow: false, lateAfterExpiry: false, liveObject: true, done.act.Files[0].S3Key: true,
		lostByPostgreSQL: true} {
		if got := objectExists(t, svc, key); got != want {
			t.Errorf("%s exists = %v after the sweep, want %v", key, got, want)
		}
	}
	if n < 2 {
		t.Errorf("the sweep reported %d objects deleted; want at least the 2 orphans", n)
	}
}
