package uploads_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/google/uuid"
	"k8s.io/utils/ptr"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// activateDirect creates a direct session of files with the given sizes
// (5 MiB parts) and sends every part straight to S3, as its client would with
// the presigned URLs.
func activateDirect(t *testing.T, svc *uploads.Service, sizes ...int64) *testSession {
	t.Helper()
	ts := &testSession{id: uuid.New(), owner: "system:serviceaccount:test:" + uuid.NewString()[:8]}
	req := uploads.Request{SessionID: ts.id, Owner: ts.owner, PartSizeBytes: ptr.To(5 * session.MiB), Transfer: store.TransferDirect}
	for i, sz := range sizes {
		req.Files = append(req.Files, session.File{Name: "direct-" + string(rune('a'+i)) + ".pdf", ContentType: "application/pdf", SizeBytes: sz})
		b := make([]byte, sz)
		_, _ = rand.Read(b)
		ts.data = append(ts.data, b)
	}
	act, err := svc.Activate(context.Background(), req)
	must(t, err)
	ts.act = act
	for i, f := range act.Files {
		for n := 1; n <= f.PartCount; n++ {
			lo, hi := ts.partRange(i, n)
			_, err := svc.S3.UploadPart(context.Background(), f.S3Key, f.S3UploadID, int32(n), bytes.NewReader(ts.data[i][lo:hi]), hi-lo, objectstore.Checksums{})
			must(t, err)
		}
	}
	return ts
}

// A direct session whose file S3 completed while the record of it failed (the
// finalize then released its lock: the session is active, the upload gone):
// the file still counts as complete for the declarative finalize, GET and the
// progress, and the next finalize makes the MOC of it. Before, the upload's
// absence read as "no parts": every part missing, the declared finalize
// blocked for good, and expiry deleted the completed object.
func TestDirectFileCompletedButNotRecordedStillCounts(t *testing.T) {
	svc, _ := newService(t)
	ts := activateDirect(t, svc, 6*session.MiB, 100)
	failpoint.EnableFunc("finalize/after-s3-complete", func() error { return errors.New("the record of the completion failed") })
	_, err := finalize(svc, ts, "Direct "+ts.id.String()[:8])
	failpoint.Disable("finalize/after-s3-complete")
	if err == nil {
		t.Fatal("finalize succeeded with its completion record failing")
	}
	sess, err := svc.Session(context.Background(), ts.id)
	must(t, err)
	if sess.Status != store.StatusActive {
		t.Fatalf("after the failed record: status %s; want active with the lock released", sess.Status)
	}
	missing, err := svc.MissingParts(context.Background(), ts.id)
	must(t, err)
	if len(missing) != 0 {
		t.Fatalf("MissingParts = %v; want none (the first file is complete in S3, the second's parts are there)", missing)
	}
	_, parts, err := svc.Received(context.Background(), sess)
	must(t, err)
	for i, f := range ts.act.Files {
		if len(parts[f.ID]) != f.PartCount {
			t.Fatalf("GET lists %d parts of file %d; want %d", len(parts[f.ID]), i, f.PartCount)
		}
	}
	prog, err := svc.Progress(context.Background(), sess)
	must(t, err)
	for i, f := range ts.act.Files {
		if p := prog[f.ID]; p.PartsReceived != f.PartCount || p.BytesReceived != f.SizeBytes {
			t.Fatalf("progress of file %d = %+v; want all %d parts", i, p, f.PartCount)
		}
	}
	if res, err := finalize(svc, ts, "Direct "+ts.id.String()[:8]); err != nil || !res.Created {
		t.Fatalf("finalize after the failed record: %+v, %v", res, err)
	}
	assertOneMOC(t, svc, ts)
}
