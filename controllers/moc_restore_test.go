package controllers_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/session"
)

// finalizedSession takes a declared session to Finalized and returns it.
func finalizedSession(t *testing.T, h *harness, name string) (client.ObjectKey, *uploadsv1.UploadSession, uuid.UUID) {
	t.Helper()
	key := h.create(t, name)
	_, us := h.reconcileTo(t, key, uploadsv1.PhaseActive)
	id := uuid.MustParse(us.Status.SessionID)
	h.storeAllParts(t, id)
	us.Spec.Finalize = &uploadsv1.FinalizeSpec{Title: "Failover Castle " + h.ns}
	if err := k8s.Update(context.Background(), us); err != nil {
		t.Fatal(err)
	}
	_, us = h.reconcileTo(t, key, uploadsv1.PhaseFinalized)
	return key, us, id
}

// loseTheCommit does in SQL what a failover to an asynchronous replica that
// had not received the finalize's commit does: the MOC rows are gone, the
// session is back to finalizing with the lock its holder took (stale by now),
// and the record of the completed file is gone too. S3 still holds the object.
func loseTheCommit(t *testing.T, id uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`DELETE FROM moc_instructions WHERE upload_session_id = $1`,
		`UPDATE upload_sessions SET status = 'finalizing', finalized_at = NULL, finalizing_at = now() - interval '10 minutes',
			finalize_token = gen_random_uuid() WHERE id = $1`,
		`UPDATE upload_files SET completed_etag = NULL WHERE session_id = $1`,
	} {
		if _, err := db.Pool.Exec(ctx, q, id); err != nil {
			t.Fatal(err)
		}
	}
}

func objectsOf(t *testing.T, id uuid.UUID) []string {
	t.Helper()
	objs, err := s3srv.Client().ListObjects(context.Background(), session.SessionPrefix(id))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func mocOf(t *testing.T, id uuid.UUID) string {
	t.Helper()
	var moc string
	if err := db.Pool.QueryRow(context.Background(), `SELECT id::text FROM moc_instructions WHERE upload_session_id = $1`, id).Scan(&moc); err != nil {
		return ""
	}
	return moc
}

// PostgreSQL loses a committed MOC (a failover) while the resource shows
// Finalized; then the resource is deleted. The delete must not take the
// session for unfinalized and remove its objects (before, Discard claimed the
// stale row and deleted the completed object): the MOC is made again from the
// objects, with the same id, and only then is the resource let go.
func TestDeletingAFinalizedResourceRestoresALostMOCNeverItsObjects(t *testing.T) {
	t.Parallel()
	h := newHarness(t, db)
	key, us, id := finalizedSession(t, h, "failover-delete")
	before := objectsOf(t, id)
	loseTheCommit(t, id)
	if err := k8s.Delete(context.Background(), us); err != nil {
		t.Fatal(err)
	}
	h.reconcile(t, key)
	if got := objectsOf(t, id); len(got) != len(before) || len(got) == 0 {
		t.Fatalf("objects after deleting a Finalized resource whose MOC PostgreSQL lost: %v; want %v kept", got, before)
	}
	if got := mocOf(t, id); got != us.Status.MocID {
		t.Fatalf("MOC in PostgreSQL = %q; want %s made again", got, us.Status.MocID)
	}
	if err := k8s.Get(context.Background(), key, us); !apierrors.IsNotFound(err) {
		t.Fatalf("the resource after its MOC was made again: %v; want it let go", err)
	}
}

// The same loss seen by the Finalized resource's own reconcile (at the latest
// when its retention ends): the MOC is made again and the resource says so;
// when it cannot be made (PostgreSQL lost the whole session), the resource
// says MOCMissing, is kept past its retention, and S3 keeps the objects.
func TestFinalizedResourceComparesItsMOCWithPostgreSQL(t *testing.T) {
	t.Parallel()
	h := newHarness(t, db)
	key, _, id := finalizedSession(t, h, "failover-verify")
	loseTheCommit(t, id)
	h.reconcile(t, key)
	us := get(t, key)
	c := meta.FindStatusCondition(us.Status.Conditions, uploadsv1.ConditionFinalized)
	if c == nil || c.Reason != uploadsv1.ReasonMOCRestored || mocOf(t, id) != us.Status.MocID {
		t.Fatalf("after the loss: condition %+v, MOC %q; want MOCRestored and MOC %s", c, mocOf(t, id), us.Status.MocID)
	}

	objects := objectsOf(t, id)
	mustExec(t, `DELETE FROM moc_instructions WHERE upload_session_id = $1;`, id)
	mustExec(t, `DELETE FROM upload_sessions WHERE id = $1`, id)
	h.clk.Step(retention + time.Hour)
	h.reconcile(t, key)
	us = get(t, key)
	if us.DeletionTimestamp != nil {
		t.Fatal("a resource whose MOC is missing was deleted at the end of its retention")
	}
	if c := meta.FindStatusCondition(us.Status.Conditions, uploadsv1.ConditionFinalized); c == nil || c.Reason != uploadsv1.ReasonMOCMissing {
		t.Fatalf("with the session gone from PostgreSQL: condition %+v; want MOCMissing", c)
	}
	if got := objectsOf(t, id); len(got) != len(objects) {
		t.Fatalf("objects %v; want %v kept", got, objects)
	}
}

// A Finalizing resource whose holder stopped after expiresAt (its lock stale,
// the session past expiry on PostgreSQL's clock) expires: no finalize may
// take that lock any more, so taking it over would retry for ever.
func TestStaleLockPastExpiryExpiresTheResource(t *testing.T) {
	t.Parallel()
	h := newHarness(t, db)
	key, id := h.active(t, "stale-past-expiry")
	h.storeAllParts(t, id)
	mustExec(t, `UPDATE upload_sessions SET status = 'finalizing', finalize_title = 'Late',
		finalizing_at = now() - interval '10 minutes', finalize_token = gen_random_uuid(), expires_at = now() - interval '1 second'
		WHERE id = $1`, id)
	h.clk.Step(ttl + time.Second)
	h.reconcileTo(t, key, uploadsv1.PhaseExpired)
	noMultipartUploads(t, id.String())
}
