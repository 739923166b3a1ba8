package e2e

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// Runs last (file order): every session of every scenario above is deleted;
// once the finalizers have run, nothing may be left that no MOC needs: no S3
// multipart upload (finalize completed them, delete and expiry aborted them),
// no object that no MOC references (a failed or refused finalize may have
// completed some), and no session row that is not finalized.
func TestZZNothingLeftBehind(t *testing.T) {
	ctx := context.Background()
	var list uploadsv1.UploadSessionList
	if err := k8s.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		_ = k8s.Delete(ctx, &list.Items[i])
	}
	waitFor(t, 60*time.Second, "every session resource to be gone", func() (bool, string) {
		var l uploadsv1.UploadSessionList
		if err := k8s.List(ctx, &l, client.Limit(5)); err != nil {
			return false, err.Error()
		}
		if len(l.Items) > 0 {
			return false, l.Items[0].Namespace + "/" + l.Items[0].Name + " " + string(l.Items[0].Status.Phase)
		}
		return true, ""
	})
	ups, err := stack.S3.Client().ListMultipartUploads(ctx, "sessions/")
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 0 {
		t.Fatalf("%d multipart uploads left in the bucket, e.g. %v", len(ups), ups[0])
	}
	keys, err := stack.S3.Client().ListObjects(ctx, "sessions/")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(ctx, `SELECT s3_key FROM moc_files`)
	if err != nil {
		t.Fatal(err)
	}
	referenced := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		referenced[k] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !referenced[k] {
			t.Errorf("object %s is referenced by no MOC", k)
		}
	}
	var unfinished int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM upload_sessions WHERE status <> 'finalized'`).Scan(&unfinished); err != nil {
		t.Fatal(err)
	}
	if unfinished != 0 {
		t.Errorf("%d session rows left that are not finalized", unfinished)
	}
}
