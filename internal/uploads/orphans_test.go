package uploads_test

import (
	"context"
	"testing"
	"time"

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
