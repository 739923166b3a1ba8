package controllers_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// statusWrites counts the reconciler's status patches and can refuse them,
// as the API server does when it fails (refuse) or when the resource changed
// since the reconcile read it (conflict).
type statusWrites struct {
	n                atomic.Int32
	refuse, conflict atomic.Bool
}

var sessionsResource = schema.GroupResource{Group: uploadsv1.GroupVersion.Group, Resource: "uploadsessions"}

func (w *statusWrites) client() client.Client {
	return interceptor.NewClient(k8s, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if sub == "status" {
				w.n.Add(1)
				if w.refuse.Load() {
					return apierrors.NewInternalError(errors.New("refused by the test"))
				}
				if w.conflict.Load() {
					return apierrors.NewConflict(sessionsResource, obj.GetName(), errors.New("changed since it was read"))
				}
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		},
	})
}

func drain(rec *events.FakeRecorder) []string {
	var got []string
	for {
		select {
		case e := <-rec.Events:
			got = append(got, e)
		default:
			return got
		}
	}
}

func fakeRecorder(h *harness) *events.FakeRecorder {
	rec := events.NewFakeRecorder(100)
	h.r.Recorder = recorder{rec}
	return rec
}

// countedStatusWrites is a harness whose status writes are counted (and can be
// refused), with its Events recorded, and a new session resource named name.
func countedStatusWrites(t *testing.T, name string) (*harness, *statusWrites, *events.FakeRecorder, client.ObjectKey) {
	t.Helper()
	h := newHarness(t, db)
	writes := &statusWrites{}
	h.r.Client = writes.client()
	return h, writes, fakeRecorder(h), h.create(t, name)
}

// wantActivatedOnce: the resource is Active and its activation was said in
// exactly one UploadsCreated Event.
func wantActivatedOnce(t *testing.T, key client.ObjectKey, rec *events.FakeRecorder) {
	t.Helper()
	if p := get(t, key).Status.Phase; p != uploadsv1.PhaseActive {
		t.Fatalf("phase %q after activation", p)
	}
	if ev := drain(rec); len(ev) != 1 || !strings.Contains(ev[0], uploadsv1.ReasonUploadsCreated) {
		t.Errorf("events after activation: %q, want one %s", ev, uploadsv1.ReasonUploadsCreated)
	}
}

// Activation is one status write, not one per change (Pending, then Active,
// then progress): the status is patched once, at the end of the reconcile.
// An Event is emitted only after the status it describes was written: when
// the write is refused, the reconcile fails and says nothing; the retry
// writes and says it.
func TestStatusIsWrittenOnceAndEventsFollowIt(t *testing.T) {
	t.Parallel()
	h, writes, rec, key := countedStatusWrites(t, "one-write")

	writes.refuse.Store(true)
	if _, err := h.r.Reconcile(context.Background(), reqOf(key)); err == nil {
		t.Fatal("reconcile with its status write refused: no error")
	}
	if ev := drain(rec); len(ev) != 0 {
		t.Errorf("events while the status write was refused: %q", ev)
	}
	if p := get(t, key).Status.Phase; p != "" {
		t.Fatalf("phase %q written although the write was refused", p)
	}

	writes.refuse.Store(false)
	writes.n.Store(0)
	h.reconcile(t, key)
	if n := writes.n.Load(); n != 1 {
		t.Errorf("activation made %d status writes, want 1", n)
	}
	wantActivatedOnce(t, key, rec)

	// Nothing changed: nothing is written, nothing said.
	writes.n.Store(0)
	h.reconcile(t, key)
	if n := writes.n.Load(); n != 0 {
		t.Errorf("a reconcile with nothing new made %d status writes", n)
	}
	if ev := drain(rec); len(ev) != 0 {
		t.Errorf("events with nothing new: %q", ev)
	}
}

// A status write refused because the resource changed since the reconcile
// read it (the upload API's activity annotation, most often) is not an
// error: the reconcile asks to run again soon, says nothing, and the next one
// writes from the newer object.
func TestStatusWriteConflictIsRetriedQuietly(t *testing.T) {
	t.Parallel()
	h, writes, rec, key := countedStatusWrites(t, "conflict")

	writes.conflict.Store(true)
	res, err := h.r.Reconcile(context.Background(), reqOf(key))
	if err != nil || res.RequeueAfter <= 0 || res.RequeueAfter > time.Second {
		t.Fatalf("reconcile with a conflicting status write: %+v, %v; want no error and a prompt requeue", res, err)
	}
	if ev := drain(rec); len(ev) != 0 {
		t.Errorf("events although the status was not written: %q", ev)
	}
	writes.conflict.Store(false)
	h.reconcile(t, key)
	wantActivatedOnce(t, key, rec)
}

// stalledActivation is the engine with S3 never answering activation: it
// returns only when the reconcile's deadline has passed.
type stalledActivation struct{ *uploads.Service }

func (stalledActivation) Activate(ctx context.Context, _ uploads.Request) (uploads.Active, error) {
	<-ctx.Done()
	return uploads.Active{}, ctx.Err()
}

// A step that used up the reconcile's deadline still has its outcome written:
// the status write has a deadline of its own, so the resource says what
// happened (Pending, creating the uploads) and the Event follows.
func TestStatusIsWrittenAfterTheReconcileTimedOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, db)
	rec := fakeRecorder(h)
	key := h.create(t, "timed-out")
	h.r.Uploads = stalledActivation{h.svc}
	h.r.Timeout = 200 * time.Millisecond
	if _, err := h.r.Reconcile(context.Background(), reqOf(key)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("reconcile with a stalled activation: %v; want the deadline", err)
	}
	us := get(t, key)
	if us.Status.Phase != uploadsv1.PhasePending {
		t.Fatalf("phase %q after the reconcile timed out; want Pending written", us.Status.Phase)
	}
	wantReady(t, us, metav1.ConditionFalse, uploadsv1.ReasonCreatingUploads)
	if ev := drain(rec); len(ev) != 1 || !strings.Contains(ev[0], "ActivateFailed") {
		t.Errorf("events: %q, want one ActivateFailed", ev)
	}
}

// failingActivation is the engine with activation failing, as when S3 or
// PostgreSQL is down (the engine's own tests cover those with real faults;
// here only the reconciler's bookkeeping of a failed step is under test).
type failingActivation struct{ *uploads.Service }

func (failingActivation) Activate(context.Context, uploads.Request) (uploads.Active, error) {
	return uploads.Active{}, errors.New("S3 is down")
}

// observedGeneration says which spec the operator has acted on: a failed
// reconcile leaves it where it was (the status still shows what it did
// manage, Pending with the reason), a successful one moves it.
func TestObservedGenerationMovesOnlyWhenAReconcileSucceeds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, db)
	key := h.create(t, "observed")
	h.r.Uploads = failingActivation{h.svc}
	if _, err := h.r.Reconcile(context.Background(), reqOf(key)); err == nil {
		t.Fatal("activation failed but the reconcile did not")
	}
	us := get(t, key)
	if us.Status.Phase != uploadsv1.PhasePending || us.Status.ObservedGeneration != 0 {
		t.Fatalf("after a failed activation: phase %q observedGeneration %d; want Pending and 0", us.Status.Phase, us.Status.ObservedGeneration)
	}
	if c := meta.FindStatusCondition(us.Status.Conditions, uploadsv1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != uploadsv1.ReasonCreatingUploads {
		t.Errorf("Ready after a failed activation: %+v", c)
	}
	h.r.Uploads = h.svc
	h.reconcile(t, key)
	if us := get(t, key); us.Status.ObservedGeneration != us.Generation {
		t.Errorf("after a successful reconcile observedGeneration %d, generation %d", us.Status.ObservedGeneration, us.Generation)
	}
}

// Ready summarises the session for tools that read one condition: True while
// it accepts parts with no finalize requested, False with the blocking reason
// while a declared finalize waits for parts, True again once finalized.
func TestReadyConditionFollowsTheLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, db)
	key, expiring := h.create(t, "ready"), h.create(t, "ready-expiring")
	h.reconcileTo(t, expiring, uploadsv1.PhaseActive)
	_, us := h.reconcileTo(t, key, uploadsv1.PhaseActive)
	wantReady(t, us, metav1.ConditionTrue, uploadsv1.ReasonAcceptingParts)

	us.Spec.Finalize = &uploadsv1.FinalizeSpec{Title: "Ready Castle"}
	if err := k8s.Update(context.Background(), us); err != nil {
		t.Fatal(err)
	}
	h.reconcile(t, key)
	us = get(t, key)
	wantReady(t, us, metav1.ConditionFalse, uploadsv1.ReasonIncompleteUpload)
	if us.Status.ObservedGeneration != us.Generation {
		t.Errorf("observedGeneration %d after acting on generation %d", us.Status.ObservedGeneration, us.Generation)
	}

	h.storeAllParts(t, uuid.MustParse(us.Status.SessionID))
	_, us = h.reconcileTo(t, key, uploadsv1.PhaseFinalized)
	wantReady(t, us, metav1.ConditionTrue, uploadsv1.ReasonFinalizeSucceeded)

	h.clk.Step(ttl + 2*time.Second)
	expiredOnPostgreSQL(t, expiring)
	_, ex := h.reconcileTo(t, expiring, uploadsv1.PhaseExpired)
	wantReady(t, ex, metav1.ConditionFalse, uploadsv1.ReasonExpired)
}

func reqOf(key client.ObjectKey) ctrl.Request { return ctrl.Request{NamespacedName: key} }

// storeAllParts sends every part of the harness's one-file session (100
// bytes, one part) through the engine, as the upload API would.
func (h *harness) storeAllParts(t *testing.T, id uuid.UUID) {
	t.Helper()
	sess, err := h.svc.Session(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	files, err := db.Files(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 100)
	_, _ = rand.Read(data)
	if _, err := h.svc.StorePart(context.Background(), uploads.PartUpload{
		Session: sess, File: files[0], PartNumber: 1, Body: bytes.NewReader(data), Size: 100}); err != nil {
		t.Fatal(err)
	}
}

func wantReady(t *testing.T, us *uploadsv1.UploadSession, status metav1.ConditionStatus, reason string) {
	t.Helper()
	c := meta.FindStatusCondition(us.Status.Conditions, uploadsv1.ConditionReady)
	if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != us.Generation {
		t.Errorf("%s: Ready = %+v; want %s %s at generation %d", us.Status.Phase, c, status, reason, us.Generation)
	}
}

// lostUnrecorded is the engine finding an S3 multipart upload lost while
// PostgreSQL refuses to mark the session failed (the engine's own tests cover
// the marking against the real database; here only the reconciler's reading
// of the outcome is under test).
type lostUnrecorded struct{ *uploads.Service }

func (lostUnrecorded) Finalize(context.Context, uploads.FinalizeRequest) (uploads.FinalizeResult, error) {
	return uploads.FinalizeResult{}, &uploads.UploadLostError{FileID: "f", Key: "k"}
}

// Failed is terminal, so the resource shows it only once PostgreSQL says the
// session failed: while the row is not marked, the reconciler keeps coming
// back (the lock goes stale and is taken over), and then follows the row.
func TestLostUploadIsFailedOnlyOncePostgreSQLSaysSo(t *testing.T) {
	t.Parallel()
	h := newHarness(t, db)
	key := h.create(t, "lost")
	_, us := h.reconcileTo(t, key, uploadsv1.PhaseActive)
	us.Spec.Finalize = &uploadsv1.FinalizeSpec{Title: "Lost Castle"}
	if err := k8s.Update(context.Background(), us); err != nil {
		t.Fatal(err)
	}
	id := uuid.MustParse(us.Status.SessionID)
	h.storeAllParts(t, id)
	h.r.Uploads = lostUnrecorded{h.svc}
	res := h.reconcile(t, key)
	if p := get(t, key).Status.Phase; p == uploadsv1.PhaseFailed || res.RequeueAfter <= 0 {
		t.Fatalf("lost upload, row not failed: phase %q, RequeueAfter %s; want not Failed and a requeue", p, res.RequeueAfter)
	}
	mustExec(t, `UPDATE upload_sessions SET status = 'failed' WHERE id = $1`, id)
	h.reconcile(t, key)
	if p := get(t, key).Status.Phase; p != uploadsv1.PhaseFailed {
		t.Fatalf("row failed: phase %q, want Failed", p)
	}
}

// A session marked failed whose removal from S3 was cut off (the replica that
// failed it died before removing what it held) has it finished by the
// reconciler when the resource goes Failed; and a Failed resource follows
// EXPIRED_RETENTION from its expiresAt, as an Expired one does. Before, a
// Failed resource was kept until someone deleted it, and what its session
// held stayed in S3 for good.
func TestFailedSessionIsRemovedAndFollowsRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHarness(t, db)
	key, id := h.active(t, "failed")
	left := session.SessionPrefix(id) + "f/completed.pdf"
	s3c := s3srv.Client()
	if _, err := s3c.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: &s3c.Bucket, Key: &left,
		Body: strings.NewReader("done"), ContentLength: ptr.To(int64(4))}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE upload_sessions SET status = 'failed', s3_removal_pending = true WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	h.reconcileTo(t, key, uploadsv1.PhaseFailed)
	if objs, err := s3c.ListObjects(ctx, session.SessionPrefix(id)); err != nil || len(objs) != 0 {
		t.Fatalf("objects left under the failed session: %v, %v", objs, err)
	}
	noMultipartUploads(t, id.String())
	var pending bool
	if err := db.Pool.QueryRow(ctx, `SELECT s3_removal_pending FROM upload_sessions WHERE id = $1`, id).Scan(&pending); err != nil || pending {
		t.Fatalf("removal still pending: %v, %v", pending, err)
	}
	h.clk.Step(ttl + expiredRetention - time.Second)
	h.reconcile(t, key)
	if get(t, key).DeletionTimestamp != nil {
		t.Fatal("deleted before its retention was over")
	}
	h.clk.Step(2 * time.Second)
	h.reconcile(t, key) // deletes
	h.reconcile(t, key) // lets the finalizer go
	if err := k8s.Get(ctx, key, &uploadsv1.UploadSession{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after its retention: %v; want the Failed resource gone", err)
	}
}
