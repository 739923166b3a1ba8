package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// Finalized resources are deleted after SESSION_RETENTION; the MOC stays
// readable over HTTP (from PostgreSQL).
func TestRetentionDeletesFinalizedResources(t *testing.T) {
	ns := "retention"
	acct := user(t)
	serviceAccount(t, ns, "unused") // creates the namespace
	rep := startReplica(t, map[string]string{"SESSION_RETENTION": "2s", "WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns, "RESYNC_INTERVAL": "1s"})
	r := call(t, rep.url, "POST", "/api/mocs/uploads/sessions", acct.token,
		strings.NewReader(`{"files":[{"name":"keep.pdf","contentType":"application/pdf","sizeBytes":10}]}`))
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	u := &upload{id: r.str("sessionId"), partSize: 8 << 20, token: acct.token,
		files: []uploadFile{{id: r.body["files"].([]any)[0].(map[string]any)["fileId"].(string), data: make([]byte, 10), partCount: 1}}}
	u.putAll(t, rep.url)
	if f := u.finalize(t, rep.url, uniqueTitle("Retained")); f.status != 201 {
		t.Fatalf("%d %s", f.status, f.raw)
	}
	waitFor(t, 30*time.Second, "the resource to be deleted after its retention", func() (bool, string) {
		us := &uploadsv1.UploadSession{}
		err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: u.id}, us)
		return apierrors.IsNotFound(err), fmt.Sprint(us.Status.Phase, err)
	})
	if g := call(t, rep.url, "GET", "/api/mocs/uploads/sessions/"+u.id, acct.token, nil); g.status != 200 || g.str("status") != "finalized" {
		t.Fatalf("GET after retention: %d %s", g.status, g.raw)
	}
}
