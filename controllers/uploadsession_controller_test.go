package controllers_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/controllers"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/testenv"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

const (
	ttl              = time.Hour
	expiredRetention = 2 * time.Hour
	retention        = 24 * time.Hour
	resync           = 30 * time.Second
)

// harness is a reconciler on a fake clock, and a namespace of the test's own.
type harness struct {
	r   *controllers.UploadSessionReconciler
	svc *uploads.Service
	clk *clocktesting.FakeClock
	ns  string
}

func newHarness(t *testing.T, st *store.Store) *harness {
	t.Helper()
	ns := "ctl-" + uuid.NewString()[:8]
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Now().UTC().Truncate(time.Second))
	svc := &uploads.Service{
		DB: st, S3: s3srv.Client(), SessionTTL: ttl, StaleLockAfter: session.DefaultStaleLockAfter, Clock: clk,
		Limits:  session.Limits{AllowedContentTypes: session.DefaultContentTypes, MaxFileSizeBytes: 5 * session.GiB},
		Buffers: partbuf.New(64*session.MiB, t.TempDir()),
	}
	return &harness{ns: ns, clk: clk, svc: svc, r: &controllers.UploadSessionReconciler{
		Client: k8s, Scheme: scheme, Recorder: recorder{events.NewFakeRecorder(1000)}, Uploads: svc,
		Resync: resync, Retention: retention, ExpiredRetention: expiredRetention,
	}}
}

// create makes a session resource of one 100-byte PDF.
func (h *harness) create(t *testing.T, name string) client.ObjectKey {
	t.Helper()
	us := &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name},
		Spec: uploadsv1.UploadSessionSpec{Owner: "system:serviceaccount:" + h.ns + ":builder",
			Files: []uploadsv1.FileSpec{{Name: "castle.pdf", ContentType: "application/pdf", SizeBytes: 100}}},
	}
	if err := k8s.Create(context.Background(), us); err != nil {
		t.Fatal(err)
	}
	return client.ObjectKeyFromObject(us)
}

// reconcile runs one reconcile; an error fails the test.
func (h *harness) reconcile(t *testing.T, key client.ObjectKey) ctrl.Result {
	t.Helper()
	res, err := h.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key})
	if err != nil {
		t.Fatalf("reconcile %s: %v", key, err)
	}
	return res
}

// active creates a session resource and reconciles it to Active; its key and
// session id.
func (h *harness) active(t *testing.T, name string) (client.ObjectKey, uuid.UUID) {
	t.Helper()
	key := h.create(t, name)
	_, us := h.reconcileTo(t, key, uploadsv1.PhaseActive)
	return key, uuid.MustParse(us.Status.SessionID)
}

// reconcileTo reconciles until the resource is in phase (each call is one
// step: finalizer, Pending, Active, …) and returns the last result.
func (h *harness) reconcileTo(t *testing.T, key client.ObjectKey, phase uploadsv1.Phase) (ctrl.Result, *uploadsv1.UploadSession) {
	t.Helper()
	for range 6 {
		res := h.reconcile(t, key)
		us := get(t, key)
		if us.Status.Phase == phase {
			return res, us
		}
	}
	t.Fatalf("%s did not reach %s: %s", key, phase, get(t, key).Status.Phase)
	return ctrl.Result{}, nil
}

func get(t *testing.T, key client.ObjectKey) *uploadsv1.UploadSession {
	t.Helper()
	us := &uploadsv1.UploadSession{}
	if err := k8s.Get(context.Background(), key, us); err != nil {
		t.Fatal(err)
	}
	return us
}

// expiredOnPostgreSQL moves a session's expires_at into the past on
// PostgreSQL's clock, which judges expiry (the harness's fake clock moves the
// reconciler's only; a replica's clock can never expire a session early).
func expiredOnPostgreSQL(t *testing.T, key client.ObjectKey) {
	t.Helper()
	mustExec(t, `UPDATE upload_sessions SET expires_at = now() - interval '1 second' WHERE id = $1`,
		get(t, key).Status.SessionID)
}

func noMultipartUploads(t *testing.T, id string) {
	t.Helper()
	ups, err := s3srv.Client().ListMultipartUploads(context.Background(), session.SessionPrefix(uuid.MustParse(id)))
	if err != nil || len(ups) != 0 {
		t.Fatalf("multipart uploads of %s: %v (%v); want none", id, ups, err)
	}
}

// A session expires at expiresAt by the engine's clock, not before: it
// asks to be looked at again just after, aborts its uploads then, and an
// Expired resource is deleted once EXPIRED_RETENTION has passed.
func TestExpiryAndRetentionFollowTheClock(t *testing.T) {
	t.Parallel()
	h := newHarness(t, db)
	key := h.create(t, "expiring")
	res, us := h.reconcileTo(t, key, uploadsv1.PhaseActive)
	if res.RequeueAfter != resync {
		t.Errorf("on activation RequeueAfter = %s, want the resync %s (the Active step runs in the same reconcile)", res.RequeueAfter, resync)
	}
	h.clk.Step(ttl - time.Second)
	if res := h.reconcile(t, key); res.RequeueAfter != 2*time.Second {
		t.Errorf("1s before expiry RequeueAfter = %s, want 2s (just after expiresAt)", res.RequeueAfter)
	}
	if p := get(t, key).Status.Phase; p != uploadsv1.PhaseActive {
		t.Fatalf("1s before expiry: %s", p)
	}
	h.clk.Step(2 * time.Second)
	expiredOnPostgreSQL(t, key)
	h.reconcile(t, key)
	expired := get(t, key)
	if expired.Status.Phase != uploadsv1.PhaseExpired {
		t.Fatalf("1s after expiry: %s", expired.Status.Phase)
	}
	noMultipartUploads(t, us.Status.SessionID)

	// Retention counts from expiresAt.
	if res := h.reconcile(t, key); res.RequeueAfter != expiredRetention-time.Second {
		t.Errorf("Expired: RequeueAfter = %s, want %s", res.RequeueAfter, expiredRetention-time.Second)
	}
	h.clk.Step(expiredRetention - 2*time.Second)
	h.reconcile(t, key)
	if get(t, key).DeletionTimestamp != nil {
		t.Fatal("deleted a second before its retention was over")
	}
	h.clk.Step(time.Second)
	h.reconcile(t, key) // deletes
	h.reconcile(t, key) // lets the finalizer go
	if err := k8s.Get(context.Background(), key, &uploadsv1.UploadSession{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after its retention: %v; want the resource gone", err)
	}
}

// A lock younger than STALE_LOCK_AFTER (on PostgreSQL's clock) is waited
// for, exactly until it would be stale; one older by a millisecond is taken
// over, and the stored request finishes the finalize.
func TestStaleLockTakeoverTiming(t *testing.T) {
	t.Parallel()
	at := time.Now().UTC().Truncate(time.Millisecond)
	h := newHarness(t, testenv.OpenStore(t, dbURL, at))
	key, id := h.active(t, "locked")
	h.storeAllParts(t, id)
	// A replica took the lock for "Locked Castle" and stopped renewing it.
	lock := func(age time.Duration) {
		t.Helper()
		mustExec(t, `UPDATE upload_sessions SET status = 'finalizing', finalizing_at = $2,
			finalize_title = 'Locked Castle', finalize_token = gen_random_uuid() WHERE id = $1`, id, at.Add(-age))
	}
	lock(session.DefaultStaleLockAfter - time.Second)
	if _, fin := h.reconcileTo(t, key, uploadsv1.PhaseFinalizing); fin.Status.FinalizingAt == nil {
		t.Fatal("Finalizing without finalizingAt")
	}
	if res := h.reconcile(t, key); res.RequeueAfter != time.Second+100*time.Millisecond {
		t.Errorf("lock 4m59s old: RequeueAfter = %s, want 1.1s (until it is stale)", res.RequeueAfter)
	}
	lock(session.DefaultStaleLockAfter)
	h.reconcile(t, key)
	if p := get(t, key).Status.Phase; p != uploadsv1.PhaseFinalizing {
		t.Fatalf("lock exactly 5m old was taken over: %s", p)
	}
	lock(session.DefaultStaleLockAfter + time.Millisecond)
	_, fin := h.reconcileTo(t, key, uploadsv1.PhaseFinalized)
	if fin.Status.Slug != "locked-castle" {
		t.Errorf("slug %q: the stored title was not used", fin.Status.Slug)
	}
	var mocs int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, id).Scan(&mocs); err != nil {
		t.Fatal(err)
	}
	if mocs != 1 {
		t.Fatalf("%d MOCs, want 1", mocs)
	}
	noMultipartUploads(t, id.String())
}

// An operator that was down past a session's expiry and retention writes the
// terminal phase first (those waiting for Expired see it, with its Event) and
// deletes the resource on the next reconcile, not in the same one.
func TestTerminalPhaseIsWrittenBeforeRetentionDeletes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, db)
	key := h.create(t, "late")
	h.reconcileTo(t, key, uploadsv1.PhaseActive)
	h.clk.Step(ttl + expiredRetention + time.Minute)
	expiredOnPostgreSQL(t, key)
	if res := h.reconcile(t, key); res.RequeueAfter <= 0 {
		t.Errorf("after writing Expired: RequeueAfter = %s; want the deleting reconcile asked for", res.RequeueAfter)
	}
	us := get(t, key)
	if us.Status.Phase != uploadsv1.PhaseExpired || us.DeletionTimestamp != nil {
		t.Fatalf("first reconcile after the outage: phase %q, deleting %v; want Expired written and the resource kept",
			us.Status.Phase, us.DeletionTimestamp != nil)
	}
	h.reconcile(t, key) // deletes
	h.reconcile(t, key) // lets the finalizer go
	if err := k8s.Get(context.Background(), key, &uploadsv1.UploadSession{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after its retention: %v; want the resource gone", err)
	}
}

// An Active resource whose rows PostgreSQL lost goes back to Pending and is
// activated again within the same reconcile: the dispatcher runs Pending's
// step after Active's moved the phase, and the result is an Active resource
// with its rows back.
func TestActiveResourceWithoutRowsIsActivatedAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, db)
	key, id := h.active(t, "rows-lost")
	mustExec(t, `DELETE FROM upload_sessions WHERE id = $1`, id)
	h.reconcile(t, key)
	if us := get(t, key); us.Status.Phase != uploadsv1.PhaseActive || !meta.IsStatusConditionTrue(us.Status.Conditions, uploadsv1.ConditionUploadsReady) {
		t.Fatalf("after one reconcile: phase %s (%s), conditions %+v; want Active with its uploads ready", us.Status.Phase, us.Status.PhaseReason, us.Status.Conditions)
	}
	sess, err := h.svc.Session(context.Background(), id)
	if err != nil || sess.Status != "active" {
		t.Fatalf("session %s in PostgreSQL: %+v, %v; want active", id, sess, err)
	}
}
