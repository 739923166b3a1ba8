package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/units"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// sessionScope is one reconcile of one resource: the object as the reconcile
// changes it, the status it started from, and the Events that describe the
// changes. The status is written once, when the step is over, and the Events
// only after that write succeeded: an Event never announces a status that a
// failed write left unsaid (the retried reconcile says it again).
type sessionScope struct {
	us     *uploadsv1.UploadSession
	id     uuid.UUID
	base   *uploadsv1.UploadSession
	events []pendingEvent
	// released: the resource is gone (deleted at the end of its retention);
	// there is no status left to write.
	released bool
}

type pendingEvent struct {
	eventType, reason, action, note string
	args                            []any
}

// event queues an Event for after the status write. note is a constant
// format; text from users or dependencies goes in args (as "%s", msg).
func (s *sessionScope) event(eventType, reason, action, note string, args ...any) {
	s.events = append(s.events, pendingEvent{eventType, reason, action, note, args})
}

// setPhase sets the phase and its human-readable reason together.
func (s *sessionScope) setPhase(phase uploadsv1.Phase, reason string) {
	s.us.Status.Phase = phase
	s.us.Status.PhaseReason = reason
}

func (s *sessionScope) setCondition(typ string, ok bool, reason, msg string) {
	setCondition(&s.us.Status, s.us.Generation, typ, ok, reason, msg)
}

// withStatus runs one step of the state machine and then, deferred, writes
// the status once (cluster-api's patch helper does the same): whatever the
// step changed, in one patch with an optimistic lock so a stale view never
// overwrites a newer status. observedGeneration moves only when the step
// succeeded, so tools waiting on it do not take a failed attempt for the
// spec having been acted on.
//
// The write has a deadline of its own: a step that used up the reconcile's
// (a slow S3) still gets its outcome, say S3Unavailable, written. When the
// resource changed since it was read, the write is refused as a conflict and
// the step's error, if any, is what the reconcile reports; nothing the step
// did is lost, as every step is idempotent and the next reconcile recomputes
// the status from the newer object.
func (r *UploadSessionReconciler) withStatus(ctx context.Context, us *uploadsv1.UploadSession, id uuid.UUID,
	step func(context.Context, *sessionScope) (ctrl.Result, error)) (res ctrl.Result, retErr error) {
	s := &sessionScope{us: us, id: id, base: us.DeepCopy()}
	defer func() {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
		defer cancel()
		if err := r.writeStatus(wctx, s, retErr == nil); err != nil {
			if retErr == nil || !apierrors.IsConflict(err) {
				retErr = errors.Join(retErr, err)
			}
			res = ctrl.Result{}
			return
		}
		for _, e := range s.events {
			r.Recorder.Eventf(s.us, nil, e.eventType, e.reason, e.action, e.note, e.args...)
		}
	}()
	return step(ctx, s)
}

// statusWriteTimeout bounds the status write at the end of a reconcile.
const statusWriteTimeout = 10 * time.Second

func (r *UploadSessionReconciler) writeStatus(ctx context.Context, s *sessionScope, succeeded bool) error {
	if s.released {
		return nil
	}
	st := &s.us.Status
	ok, reason, msg := summarizeReady(st, s.us.Spec.Finalize != nil)
	setCondition(st, s.us.Generation, uploadsv1.ConditionReady, ok, reason, msg)
	if succeeded {
		st.ObservedGeneration = s.us.Generation
	}
	if equality.Semantic.DeepEqual(&s.base.Status, st) {
		return nil
	}
	if err := r.Status().Patch(ctx, s.us, client.MergeFromWithOptions(s.base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patch status of %s/%s: %w", s.us.Namespace, s.us.Name, err)
	}
	return nil
}

// summarizeReady is the Ready condition: True while the session is where its
// spec asks it to be — Active and accepting parts with no finalize requested,
// or Finalized — else False with the reason of what holds it back (the
// UploadsReady or Finalized condition's reason, or the phase).
func summarizeReady(st *uploadsv1.UploadSessionStatus, finalizeRequested bool) (bool, string, string) {
	uploadsReady := meta.FindStatusCondition(st.Conditions, uploadsv1.ConditionUploadsReady)
	finalized := meta.FindStatusCondition(st.Conditions, uploadsv1.ConditionFinalized)
	switch {
	case st.Phase == uploadsv1.PhaseFinalized:
		if finalized != nil {
			return finalized.Status == metav1.ConditionTrue, finalized.Reason, finalized.Message
		}
		return true, uploadsv1.ReasonFinalizeSucceeded, st.PhaseReason
	case st.Phase == uploadsv1.PhaseExpired:
		return false, uploadsv1.ReasonExpired, st.PhaseReason
	case uploadsReady == nil:
		return false, uploadsv1.ReasonCreatingUploads, "creating S3 multipart uploads"
	case uploadsReady.Status != metav1.ConditionTrue:
		return false, uploadsReady.Reason, uploadsReady.Message
	case st.Phase == uploadsv1.PhaseFinalizing:
		return false, uploadsv1.ReasonFinalizing, "a finalize holds the lock"
	case finalizeRequested:
		if finalized != nil && finalized.Status != metav1.ConditionTrue && finalized.Reason != uploadsv1.ReasonNotRequested {
			return false, finalized.Reason, finalized.Message
		}
		return false, uploadsv1.ReasonFinalizeRequested, "spec.finalize is set; finalizing once every part is there"
	default:
		msg := "accepting parts"
		if st.ExpiresAt != nil {
			msg += " until " + st.ExpiresAt.UTC().Format(time.RFC3339)
		}
		return true, uploadsv1.ReasonAcceptingParts, msg
	}
}

func setCondition(st *uploadsv1.UploadSessionStatus, gen int64, typ string, ok bool, reason, msg string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen,
	})
}

// applyActive copies what activation recorded into the status.
func applyActive(st *uploadsv1.UploadSessionStatus, act uploads.Active) {
	st.SessionID = act.Session.ID.String()
	st.PartSizeBytes = act.Session.PartSizeBytes
	exp := metav1.NewTime(act.Session.ExpiresAt)
	st.ExpiresAt = &exp
	st.FileCount = int32(len(act.Files)) //nolint:gosec // at most 100 files
	prev := map[string]uploadsv1.FileStatus{}
	for _, f := range st.Files {
		prev[f.FileID] = f
	}
	st.Files = st.Files[:0]
	for _, f := range act.Files {
		fs := prev[f.ID.String()]
		fs.FileID, fs.Name, fs.SizeBytes, fs.PartCount = f.ID.String(), f.Name, f.SizeBytes, int32(f.PartCount) //nolint:gosec // at most 10,000
		st.Files = append(st.Files, fs)
	}
	st.Progress = progress(st.Files)
}

// progress renders the Progress column: bytes and parts received of the total.
func progress(files []uploadsv1.FileStatus) string {
	var got, total int64
	var gotParts, parts int32
	for _, f := range files {
		got += f.BytesReceived
		total += f.SizeBytes
		gotParts += f.PartsReceived
		parts += f.PartCount
	}
	pct := 0
	if total > 0 {
		pct = int(got * 100 / total)
	}
	return fmt.Sprintf("%d%% %s/%s (%d/%d parts)", pct, units.Bytes(got, ""), units.Bytes(total, ""), gotParts, parts)
}
