package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// A session not finalized by expiresAt becomes Expired with its S3 uploads
// aborted; parts and finalize then answer 410.
//
// The short-lived replica both creates and reconciles the session, in a
// namespace of its own: a session's row is written by whichever activation
// comes first (the API's, or a reconciler's that saw the new resource), each
// with its own SESSION_TTL, so a reconciler with the default TTL watching the
// same namespace could give the session an hour.
func TestSessionExpires(t *testing.T) {
	t.Parallel() // its own namespace, watched by its own replica
	acct := user(t)
	ns := namespace(t, "expiry")
	short := startReplica(t, map[string]string{"SESSION_TTL": "2s", "WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns})
	deleteSessionsAtEnd(t, ns)
	r := call(t, short.url, "POST", "/api/mocs/uploads/sessions", acct.token,
		strings.NewReader(`{"files":[{"name":"e.pdf","contentType":"application/pdf","sizeBytes":10}]}`))
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	id := r.str("sessionId")
	us := waitPhase(t, ns, id, uploadsv1.PhaseExpired)
	if c := findCond(us, uploadsv1.ConditionUploadsReady); c == nil || c.Reason != uploadsv1.ReasonUploadsAborted {
		t.Errorf("UploadsReady = %+v", c)
	}
	noMultipartUploads(t, "sessions/"+id+"/")
	fileID := r.body["files"].([]any)[0].(map[string]any)["fileId"].(string)
	p := call(t, "", "PUT", "/api/mocs/uploads/sessions/"+id+"/files/"+fileID+"/parts/1", acct.token, strings.NewReader("0123456789"))
	if p.status != http.StatusGone || p.str("error") != "SESSION_EXPIRED" {
		t.Errorf("part after expiry: %d %s", p.status, p.raw)
	}
	f := call(t, "", "POST", "/api/mocs/uploads/finalize", acct.token, jsonBody(map[string]any{"uploadSessionId": id, "title": "Late"}))
	if f.status != http.StatusGone || f.str("error") != "SESSION_EXPIRED" {
		t.Errorf("finalize after expiry: %d %s", f.status, f.raw)
	}
}

// Deleting a session whose finalize holds the lock waits for it; once the
// finalize is over (here: its replica died and the lock went stale) the
// uploads are aborted and the rows removed.
func TestDeleteWaitsForARunningFinalize(t *testing.T) {
	ctx := context.Background()
	acct := user(t)
	crashy := startReplica(t, map[string]string{"MOCUPLOAD_FAILPOINTS": "finalize/after-lock=kill", "WATCH_NAMESPACE": "no-such-namespace"})
	u := createUpload(t, acct, fileReq{"d.pdf", pdf, 100})
	u.putAll(t, "")
	req, _ := http.NewRequest("POST", crashy.url+"/api/mocs/uploads/finalize",
		strings.NewReader(fmt.Sprintf(`{"uploadSessionId":%q,"title":"Deleted"}`, u.id)))
	req.Header.Set("Authorization", "Bearer "+acct.token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("replica answered %d", resp.StatusCode)
	}
	us := &uploadsv1.UploadSession{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: u.id}, us); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, us); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "resource to go", func() (bool, string) {
		err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: u.id}, &uploadsv1.UploadSession{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	// The delete found the dead replica's lock live and waited for it (not
	// a slow delete that happened to take as long).
	waitEvent(t, "default", u.id, "WaitingForFinalize")
	var n int
	must(t, db.QueryRow(ctx, `SELECT count(*) FROM upload_sessions WHERE id = $1`, u.id).Scan(&n))
	if n != 0 {
		t.Errorf("after delete: %d session rows", n)
	}
	noMultipartUploads(t, "sessions/"+u.id+"/")
	if g := call(t, "", "GET", "/api/mocs/uploads/sessions/"+u.id, acct.token, nil); g.status != 404 {
		t.Errorf("GET after delete before finalization: %d, want 404", g.status)
	}
}

// x-amz-checksum-* headers go through to S3, which verifies them.
func TestChecksumHeadersPassThrough(t *testing.T) {
	acct := user(t)
	u := createUpload(t, acct, fileReq{"c.pdf", pdf, 1000})
	good := sha256.Sum256(u.partBytes(0, 1))
	bad := sha256.Sum256([]byte("other"))
	if r := u.put(t, "", 0, 1, withHeader("x-amz-checksum-sha256", base64.StdEncoding.EncodeToString(bad[:]))); r.status != 400 || r.str("error") != "CHECKSUM_MISMATCH" {
		t.Errorf("bad sha256: %d %s", r.status, r.raw)
	}
	if r := u.put(t, "", 0, 1, withHeader("x-amz-checksum-sha256", base64.StdEncoding.EncodeToString(good[:]))); r.status != 200 {
		t.Errorf("good sha256: %d %s", r.status, r.raw)
	}
}
