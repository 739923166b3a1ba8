package e2e

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// Runs last (file order): every session of every scenario above is deleted;
// once the finalizers have run, no S3 multipart upload may be left in the
// bucket — finalize completed them, delete and expiry aborted them.
func TestZZNoMultipartUploadLeftBehind(t *testing.T) {
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
}
