package e2e

import (
	"context"
	"testing"
	"time"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// A tenant who patches the finalizer away and deletes its resource (so the
// operator's delete never runs) leaves nothing behind: the leader's sweep
// sees the resource gone for RESOURCELESS_SESSION_GRACE and removes the
// session as a delete would, its multipart upload aborted and its rows gone.
// Before, the upload and its parts stayed in S3 for good and the session
// counted against its owner's cap.
func TestSessionWhoseFinalizerWasRemovedIsSwept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := createUpload(t, user(t), fileReq{"a.pdf", pdf, 6 << 20})
	u.putAll(t, "")
	waitPhase(t, "default", u.id, uploadsv1.PhaseActive)
	if ups, err := stack.S3.Client().ListMultipartUploads(ctx, "sessions/"+u.id+"/"); err != nil || len(ups) != 1 {
		t.Fatalf("multipart uploads before the delete: %v (%v); want the session's one", ups, err)
	}
	mustKubectl(t, "patch", "uploadsession", u.id, "-n", "default", "--type=json",
		"-p", `[{"op":"remove","path":"/metadata/finalizers"}]`)
	mustKubectl(t, "delete", "uploadsession", u.id, "-n", "default", "--wait=true", "--timeout=30s")
	waitFor(t, 60*time.Second, "the session of the deleted resource removed", func() (bool, string) {
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM upload_sessions WHERE id = $1`, u.id).Scan(&n); err != nil {
			return false, err.Error()
		}
		return n == 0, "the session's row is still there"
	})
	noMultipartUploads(t, "sessions/"+u.id+"/")
	if objs, err := stack.S3.Client().ListObjects(ctx, "sessions/"+u.id+"/"); err != nil || len(objs) != 0 {
		t.Fatalf("objects left: %v (%v)", objs, err)
	}
	if r := call(t, "", "GET", "/api/mocs/uploads/sessions/"+u.id, u.token, nil); r.status != 404 {
		t.Fatalf("GET after the sweep: %d %s; want 404", r.status, r.raw)
	}
}
