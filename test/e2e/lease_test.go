package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/session"
	upclient "github.com/mocs-dev/upload-operator/pkg/client"
)

// namespace creates a namespace of the test's own. Start the replica that
// watches it after this: at the end of the test its sessions are deleted
// while that replica still runs (cleanups run last-registered first), so no
// resource is left waiting for a finalizer nobody serves.
func namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := prefix + "-" + uuid.NewString()[:8]
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// deleteSessionsAtEnd deletes every session in ns when the test ends and
// waits until they are gone.
func deleteSessionsAtEnd(t *testing.T, ns string) {
	t.Helper()
	t.Cleanup(func() {
		ctx := context.Background()
		if err := k8s.DeleteAllOf(ctx, &uploadsv1.UploadSession{}, client.InNamespace(ns)); err != nil {
			t.Errorf("delete the sessions of %s: %v", ns, err)
			return
		}
		waitFor(t, 60*time.Second, "the sessions of "+ns+" to go", func() (bool, string) {
			var l uploadsv1.UploadSessionList
			if err := k8s.List(ctx, &l, client.InNamespace(ns)); err != nil {
				return false, err.Error()
			}
			return len(l.Items) == 0, fmt.Sprint(len(l.Items))
		})
	})
}

// finalizeAsync sends a finalize to base and returns where its answer arrives.
func (u *upload) finalizeAsync(base, title string) <-chan response {
	body := jsonBody(map[string]any{"uploadSessionId": u.id, "title": title})
	return sendAsync(func() (response, error) {
		return send(base, "POST", "/api/mocs/uploads/finalize", u.token, body)
	})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func sessionStatus(t *testing.T, id string) string {
	t.Helper()
	var s string
	if err := db.QueryRow(context.Background(), `SELECT status FROM upload_sessions WHERE id = $1`, id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Deleting a session while its finalize is alive (slow here: 5 s of S3
// completions against a 2 s stale window, renewed all along) waits for that
// finalize: it creates the MOC, and the delete then keeps it.
func TestDeleteWaitsForALiveFinalize(t *testing.T) {
	ctx := context.Background()
	acct := user(t)
	slow := startReplica(t, map[string]string{"MOCUPLOAD_FAILPOINTS": "finalize/after-plan=sleep:5s",
		"STALE_LOCK_AFTER": "2s", "WATCH_NAMESPACE": "no-such-namespace"})
	u := createUpload(t, acct, fileReq{"kept.pdf", pdf, 6 << 20})
	u.putAll(t, "")
	title := uniqueTitle("Kept Castle")
	answer := u.finalizeAsync(slow.url, title)
	waitFor(t, 10*time.Second, "the finalize to hold the lock", func() (bool, string) {
		s := sessionStatus(t, u.id)
		return s == "finalizing", s
	})
	us := &uploadsv1.UploadSession{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: u.id}, us); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, us); err != nil {
		t.Fatal(err)
	}
	if r := <-answer; r.status != http.StatusCreated {
		t.Fatalf("finalize while its session was being deleted: %d %s; want 201", r.status, r.raw)
	}
	waitFor(t, 30*time.Second, "the resource to go", func() (bool, string) {
		err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: u.id}, &uploadsv1.UploadSession{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	var key string
	if err := db.QueryRow(ctx, `SELECT f.s3_key FROM moc_files f JOIN moc_instructions m ON m.id = f.moc_id
		WHERE m.upload_session_id = $1`, u.id).Scan(&key); err != nil {
		t.Fatalf("the MOC's file: %v", err)
	}
	if _, ok, err := stack.S3.Client().HeadObject(ctx, key); err != nil || !ok {
		t.Fatalf("the MOC's object: exists=%v, %v", ok, err)
	}
}

// A declarative finalize waits for missing parts without taking the lock, so
// parts keep arriving (200, never 409) while it waits; then it finalizes.
// Here every lock its reconciler takes is held for a second, so a reconcile
// that took it while parts are missing would be seen.
func TestDeclarativeFinalizeWaitsForPartsWithoutTheLock(t *testing.T) {
	t.Parallel() // its own namespace, watched by its own replica
	ctx := context.Background()
	ns := namespace(t, "declared")
	acct := user(t)
	startReplica(t, map[string]string{"MOCUPLOAD_FAILPOINTS": "finalize/after-lock=sleep:1s",
		"WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns, "RESYNC_INTERVAL": "200ms"})
	deleteSessionsAtEnd(t, ns)
	us := &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Name: "waits", Namespace: ns},
		Spec: uploadsv1.UploadSessionSpec{Owner: acct.name, PartSizeBytes: ptr.To(int64(5 << 20)),
			Files:    []uploadsv1.FileSpec{{Name: "waits.pdf", ContentType: pdf, SizeBytes: 16 << 20}},
			Finalize: &uploadsv1.FinalizeSpec{Title: uniqueTitle("Patient Castle")}},
	}
	if err := k8s.Create(ctx, us); err != nil {
		t.Fatal(err)
	}
	got := waitPhase(t, ns, "waits", uploadsv1.PhaseActive)
	u := &upload{id: got.Status.SessionID, partSize: got.Status.PartSizeBytes, token: acct.token,
		files: []uploadFile{{id: got.Status.Files[0].FileID, data: randomBytes(16 << 20), partCount: 4}}}
	for n := 1; n <= 3; n++ {
		if r := u.put(t, "", 0, n); r.status != 200 {
			t.Fatalf("part %d while the finalize waits: %d %s", n, r.status, r.raw)
		}
		// Several reconciles (200 ms apart) see the missing parts; none may lock.
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			var locked bool
			if err := db.QueryRow(ctx, `SELECT finalizing_at IS NOT NULL FROM upload_sessions WHERE id = $1`, u.id).Scan(&locked); err != nil {
				t.Fatal(err)
			}
			if locked {
				t.Fatalf("after part %d of 4 the declarative finalize holds the lock", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c := meta.FindStatusCondition(waitPhase(t, ns, "waits", uploadsv1.PhaseActive).Status.Conditions, uploadsv1.ConditionFinalized)
	if c == nil || c.Reason != uploadsv1.ReasonIncompleteUpload || !strings.Contains(c.Message, "1 part(s) missing") {
		t.Fatalf("Finalized condition = %+v; want IncompleteUpload naming one missing part", c)
	}
	if r := u.put(t, "", 0, 4); r.status != 200 {
		t.Fatalf("last part: %d %s", r.status, r.raw)
	}
	waitPhase(t, ns, "waits", uploadsv1.PhaseFinalized)
}

// A declarative finalize of a session with 19,998 missing parts says so in a
// condition a status patch can carry (a message under 32 KiB), not a list of
// every number that the API server rejects.
func TestManyMissingPartsAreSummarised(t *testing.T) {
	t.Parallel() // its own namespace, watched by its own replica
	ns := namespace(t, "summary")
	acct := user(t)
	startReplica(t, map[string]string{"WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns, "MAX_FILE_SIZE_BYTES": "60GiB"})
	deleteSessionsAtEnd(t, ns)
	size := int64(9999) * 5 << 20
	us := &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Name: "huge", Namespace: ns},
		Spec: uploadsv1.UploadSessionSpec{Owner: acct.name, PartSizeBytes: ptr.To(int64(5 << 20)),
			Files:    []uploadsv1.FileSpec{{Name: "a.pdf", ContentType: pdf, SizeBytes: size}, {Name: "b.pdf", ContentType: pdf, SizeBytes: size}},
			Finalize: &uploadsv1.FinalizeSpec{Title: uniqueTitle("Huge Castle")}},
	}
	if err := k8s.Create(context.Background(), us); err != nil {
		t.Fatal(err)
	}
	var c *metav1.Condition
	waitFor(t, 60*time.Second, "the IncompleteUpload condition", func() (bool, string) {
		got := &uploadsv1.UploadSession{}
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "huge"}, got); err != nil {
			return false, err.Error()
		}
		c = meta.FindStatusCondition(got.Status.Conditions, uploadsv1.ConditionFinalized)
		return c != nil && c.Reason == uploadsv1.ReasonIncompleteUpload, fmt.Sprintf("%+v", c)
	})
	if len(c.Message) > session.MaxMissingSummary || !strings.HasPrefix(c.Message, "19998 part(s) missing in 2 file(s)") {
		t.Fatalf("message (%d bytes) = %.200q", len(c.Message), c.Message)
	}
}

// A session whose S3 multipart upload is lost fails: 409 UPLOAD_LOST, the
// resource Failed with the reason, the row failed, and nothing left in S3.
func TestLostUploadFailsTheSessionAndItsResource(t *testing.T) {
	ctx := context.Background()
	acct := user(t)
	u := createUpload(t, acct, fileReq{"a.pdf", pdf, 6 << 20}, fileReq{"b.pdf", pdf, 100})
	u.putAll(t, "")
	var key, uploadID string
	if err := db.QueryRow(ctx, `SELECT s3_key, s3_upload_id FROM upload_files WHERE id = $1`, u.files[1].id).Scan(&key, &uploadID); err != nil {
		t.Fatal(err)
	}
	if err := stack.S3.Client().AbortMultipartUpload(ctx, key, uploadID); err != nil {
		t.Fatal(err)
	}
	if r := u.finalize(t, "", uniqueTitle("Lost Castle")); r.status != http.StatusConflict || r.str("error") != "UPLOAD_LOST" {
		t.Fatalf("finalize: %d %s; want 409 UPLOAD_LOST", r.status, r.raw)
	}
	got := waitPhase(t, "default", u.id, uploadsv1.PhaseFailed)
	if c := findCond(got, uploadsv1.ConditionFinalized); c == nil || c.Reason != uploadsv1.ReasonUploadLost {
		t.Errorf("Finalized condition = %+v", c)
	}
	if s := sessionStatus(t, u.id); s != "failed" {
		t.Errorf("row status = %s, want failed", s)
	}
	ups, err := stack.S3.Client().ListMultipartUploads(ctx, "sessions/"+u.id+"/")
	if err != nil || len(ups) != 0 {
		t.Fatalf("uploads left: %v, %v", ups, err)
	}
}

// A session fails (an upload lost after a finalize had completed its other
// file) on a replica that is killed (SIGKILL) right after marking it failed,
// before removing what it holds. The removal was recorded as pending in the
// same UPDATE, so the resource's reconcile on another manager finishes it:
// nothing of the session stays in S3. Before, the completed object stayed for
// good (retention never deleted Failed resources; no sweep deleted objects).
func TestFailedSessionIsRemovedAfterItsReplicaDies(t *testing.T) {
	ctx := context.Background()
	acct := user(t)
	crashy := startReplica(t, map[string]string{"MOCUPLOAD_FAILPOINTS": "finalize/after-fail=kill", "WATCH_NAMESPACE": "no-such-namespace"})
	u := createUpload(t, acct, fileReq{"a.pdf", pdf, 6 << 20}, fileReq{"b.pdf", pdf, 100})
	u.putAll(t, "")
	type file struct{ key, uploadID string }
	var a, b file
	for i, f := range []*file{&a, &b} {
		if err := db.QueryRow(ctx, `SELECT s3_key, s3_upload_id FROM upload_files WHERE id = $1`, u.files[i].id).Scan(&f.key, &f.uploadID); err != nil {
			t.Fatal(err)
		}
	}
	// A finalize completed a.pdf (and recorded it) before it was interrupted.
	rows, err := db.Query(ctx, `SELECT s3_part_number, etag, size_bytes FROM upload_parts WHERE file_id = $1 ORDER BY part_number`, u.files[0].id)
	if err != nil {
		t.Fatal(err)
	}
	var parts []objectstore.PartInfo
	for rows.Next() {
		var p objectstore.PartInfo
		if err := rows.Scan(&p.PartNumber, &p.ETag, &p.Size); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	// The upload keeps a full-object CRC64NVME: completing it names each
	// part's, as S3 lists them.
	listed, err := stack.S3.Client().ListParts(ctx, a.key, a.uploadID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range parts {
		for _, l := range listed {
			if l.PartNumber == parts[i].PartNumber {
				parts[i].CRC64NVME = l.CRC64NVME
			}
		}
	}
	etag, _, err := stack.S3.Client().CompleteMultipartUpload(ctx, a.key, a.uploadID, parts, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `UPDATE upload_files SET completed_etag = $2 WHERE id = $1`, u.files[0].id, etag); err != nil {
		t.Fatal(err)
	}
	// b.pdf's upload is lost behind the operator's back.
	if err := stack.S3.Client().AbortMultipartUpload(ctx, b.key, b.uploadID); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", crashy.url+"/api/mocs/uploads/finalize",
		strings.NewReader(fmt.Sprintf(`{"uploadSessionId":%q,"title":%q}`, u.id, uniqueTitle("Lost Castle"))))
	req.Header.Set("Authorization", "Bearer "+acct.token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the replica answered %d; want it killed mid-finalize", resp.StatusCode)
	}
	if err := crashy.proc.Wait(30 * time.Second); err == nil || err.Error() != "signal: killed" {
		t.Fatalf("the replica ended with %v; want killed by SIGKILL", err)
	}
	if s := sessionStatus(t, u.id); s != "failed" {
		t.Fatalf("row status = %s after the kill, want failed", s)
	}
	waitPhase(t, "default", u.id, uploadsv1.PhaseFailed)
	waitFor(t, 60*time.Second, "nothing of the failed session left in S3", func() (bool, string) {
		objs, err := stack.S3.Client().ListObjects(ctx, "sessions/"+u.id+"/")
		var pending bool
		if qerr := db.QueryRow(ctx, `SELECT s3_removal_pending FROM upload_sessions WHERE id = $1`, u.id).Scan(&pending); qerr != nil {
			return false, qerr.Error()
		}
		return err == nil && len(objs) == 0 && !pending, fmt.Sprintf("objects %v (%v), removal pending %v", objs, err, pending)
	})
	noMultipartUploads(t, "sessions/"+u.id+"/")
}

// A session created over HTTP carries the finalizer from the start; deleting
// its resource while the API is still activating it leaves nothing behind:
// the API answers 404 and removes what it created, and the resource goes.
func TestDeleteDuringHTTPCreationLeavesNothing(t *testing.T) {
	ctx := context.Background()
	acct := serviceAccount(t, "default", "racing-creator")
	creator := startReplica(t, map[string]string{"MOCUPLOAD_FAILPOINTS": "create/after-resource=sleep:2s",
		"WATCH_NAMESPACE": "no-such-namespace", "SESSION_NAMESPACE": "default"})
	answer := sendAsync(func() (response, error) {
		return send(creator.url, "POST", "/api/mocs/uploads/sessions", acct.token,
			jsonBody(map[string]any{"files": []map[string]any{{"name": "r.pdf", "contentType": pdf, "sizeBytes": 100}}}))
	})
	var us *uploadsv1.UploadSession
	waitFor(t, 10*time.Second, "the resource to exist", func() (bool, string) {
		var l uploadsv1.UploadSessionList
		if err := k8s.List(ctx, &l, client.InNamespace("default")); err != nil {
			return false, err.Error()
		}
		for i := range l.Items {
			if l.Items[i].Spec.Owner == acct.name && l.Items[i].DeletionTimestamp.IsZero() {
				us = &l.Items[i]
				return true, ""
			}
		}
		return false, fmt.Sprint(len(l.Items))
	})
	if !hasFinalizer(us) {
		t.Fatalf("resource created over HTTP has finalizers %v; want %s", us.Finalizers, uploadsv1.Finalizer)
	}
	if err := k8s.Delete(ctx, us); err != nil {
		t.Fatal(err)
	}
	if r := <-answer; r.status != http.StatusNotFound || r.str("error") != "SESSION_NOT_FOUND" {
		t.Fatalf("create whose resource was deleted meanwhile: %d %s; want 404", r.status, r.raw)
	}
	waitFor(t, 30*time.Second, "the resource to go", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(us), &uploadsv1.UploadSession{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	var rows int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM upload_sessions WHERE id = $1`, us.Name).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	ups, err := stack.S3.Client().ListMultipartUploads(ctx, "sessions/"+us.Name+"/")
	if err != nil || rows != 0 || len(ups) != 0 {
		t.Fatalf("left behind: %d rows, uploads %v (%v)", rows, ups, err)
	}
}

func hasFinalizer(us *uploadsv1.UploadSession) bool {
	for _, f := range us.Finalizers {
		if f == uploadsv1.Finalizer {
			return true
		}
	}
	return false
}

// An S3 that accepts connections and never answers holds no reconcile
// forever: with ten sessions stuck activating (more than the reconciler's
// workers), another session is still reconciled at once, and once S3 answers
// again every stuck session becomes Active.
func TestReconcilerKeepsWorkingWhileS3Hangs(t *testing.T) {
	t.Parallel() // its own namespace, watched by its own replica
	ctx := context.Background()
	ns := namespace(t, "hang")
	acct := user(t)
	_, px := s3Proxied(t, map[string]string{"WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns,
		"S3_CALL_TIMEOUT": "1s", "RECONCILE_TIMEOUT": "10s"})
	deleteSessionsAtEnd(t, ns)
	if err := px.AddToxic("hang", "timeout", "upstream", `{"timeout":0}`); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		us := &uploadsv1.UploadSession{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("stuck-%d", i), Namespace: ns},
			Spec:       uploadsv1.UploadSessionSpec{Owner: acct.name, Files: []uploadsv1.FileSpec{{Name: "s.pdf", ContentType: pdf, SizeBytes: 10}}},
		}
		if err := k8s.Create(ctx, us); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the sessions to be stuck activating", func() (bool, string) {
		us := &uploadsv1.UploadSession{}
		err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "stuck-9"}, us)
		return err == nil && us.Status.Phase == uploadsv1.PhasePending, fmt.Sprint(err)
	})
	bad := &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Name: "invalid", Namespace: ns},
		Spec:       uploadsv1.UploadSessionSpec{Owner: acct.name, Files: []uploadsv1.FileSpec{{Name: "v.exe", ContentType: "application/x-msdownload", SizeBytes: 10}}},
	}
	if err := k8s.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, ns, "invalid", uploadsv1.PhaseFailed)
	if err := px.RemoveToxic("hang"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		waitPhase(t, ns, fmt.Sprintf("stuck-%d", i), uploadsv1.PhaseActive)
	}
}

// The Go client, told FINALIZE_IN_PROGRESS while another finalize renews its
// lock, polls every few seconds and gets the MOC as soon as that finalize
// commits, not after the lock's 60 s stale window.
//
// The session lives in a namespace only that replica watches: the suite's
// manager judges locks stale after 3 s and would take this one over while the
// first finalize sleeps.
func TestClientPollsAFinalizeInProgress(t *testing.T) {
	t.Parallel() // its own namespace, watched by its own replica
	acct := user(t)
	ns := namespace(t, "poll")
	slow := startReplica(t, map[string]string{"MOCUPLOAD_FAILPOINTS": "finalize/after-plan=sleep:3s",
		"STALE_LOCK_AFTER": "60s", "WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns})
	deleteSessionsAtEnd(t, ns)
	u := createUploadAt(t, slow.url, acct, fileReq{"poll.pdf", pdf, 100})
	u.putAll(t, slow.url)
	title := uniqueTitle("Polled Castle")
	first := u.finalizeAsync(slow.url, title)
	waitFor(t, 10*time.Second, "the first finalize to hold the lock", func() (bool, string) {
		s := sessionStatus(t, u.id)
		return s == "finalizing", s
	})
	c := upclient.New(slow.url, upclient.StaticToken(acct.token))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	moc, err := c.Finalize(ctx, u.id, title, "", upclient.ReturnConflict)
	if err != nil || moc.Created {
		t.Fatalf("client finalize: %+v, %v; want the other finalize's MOC", moc, err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the client waited %s for a finalize that took 3 s", took)
	}
	if r := <-first; r.status != http.StatusCreated {
		t.Fatalf("first finalize: %d %s", r.status, r.raw)
	}
}
