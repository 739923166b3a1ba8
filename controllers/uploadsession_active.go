package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// reconcileActive follows PostgreSQL (an HTTP finalize may have moved the
// session on), expires the session at expiresAt, refreshes progress, and runs
// a declarative finalize when spec.finalize is set.
func (r *UploadSessionReconciler) reconcileActive(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	sess, err := r.Uploads.Session(ctx, s.id)
	if errors.Is(err, uploads.ErrSessionNotFound) {
		// Rows gone while the resource says Active: back to Pending, whose
		// step activates again (idempotent) and says so if it cannot yet.
		msg := "the session's rows are gone from PostgreSQL; creating them again"
		s.setPhase(uploadsv1.PhasePending, msg)
		s.setCondition(uploadsv1.ConditionUploadsReady, false, uploadsv1.ReasonCreatingUploads, msg)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	switch sess.Status {
	case store.StatusFinalizing, store.StatusFinalized, store.StatusExpired, store.StatusFailed:
		return r.followDatabase(ctx, s, sess)
	}
	if sess.Expired(r.now()) {
		return r.expire(ctx, s)
	}
	if err := r.refreshProgress(ctx, s, sess); err != nil {
		return ctrl.Result{}, err
	}
	if s.us.Spec.Finalize != nil {
		return r.finalizeDeclared(ctx, s)
	}
	return ctrl.Result{RequeueAfter: min(sess.ExpiresAt.Sub(r.now())+time.Second, r.resync())}, nil
}

// finalizeDeclared runs the finalize that spec.finalize asks for once every
// part is there. Completeness is checked first from what PostgreSQL recorded,
// without the lock: taking it while parts are still arriving would turn them
// away (409) for as long as the check runs.
func (r *UploadSessionReconciler) finalizeDeclared(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	missing, err := r.Uploads.MissingParts(ctx, s.id)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(missing) > 0 {
		r.blockFinalize(ctx, s, uploadsv1.ReasonIncompleteUpload, session.SummarizeMissing(missing), "")
		return ctrl.Result{RequeueAfter: r.resync()}, nil
	}
	return r.finalize(ctx, s, uploads.FinalizeRequest{
		SessionID: s.id, Title: s.us.Spec.Finalize.Title, Description: s.us.Spec.Finalize.Description,
	})
}

func (r *UploadSessionReconciler) resync() time.Duration {
	if r.Resync > 0 {
		return r.Resync
	}
	return 30 * time.Second
}

// reconcileFinalizing waits for the lock holder, and takes over a stale lock
// (a replica that crashed mid-finalize) to finish the request it stored.
func (r *UploadSessionReconciler) reconcileFinalizing(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	sess, err := r.Uploads.Session(ctx, s.id)
	if err != nil {
		return ctrl.Result{}, err
	}
	if sess.Status != store.StatusFinalizing {
		return r.followDatabase(ctx, s, sess)
	}
	// The lock's age is PostgreSQL's: a live holder keeps renewing it, so this
	// only goes on once the holder has stopped.
	if sess.LockHeld(r.Uploads.StaleAfter()) {
		wait := sess.LockStaleIn(r.Uploads.StaleAfter()) + 100*time.Millisecond
		return ctrl.Result{RequeueAfter: min(wait, r.resync())}, nil
	}
	if sess.PastExpiry {
		// The holder stopped after expiresAt: no finalize may take its lock
		// any more (that would commit a MOC after expiry), so the session
		// expires.
		return r.expire(ctx, s)
	}
	log.FromContext(ctx).Info("finalize lock is stale; taking over", "lockAge", fmt.Sprint(sess.LockAge))
	return r.finalize(ctx, s, uploads.FinalizeRequest{SessionID: s.id, Resume: true})
}

// followDatabase moves the resource to the phase PostgreSQL has for its
// session (another replica's HTTP finalize, an expiry or a lost upload moved
// it on); the reconcile loop then runs that phase's step.
func (r *UploadSessionReconciler) followDatabase(ctx context.Context, s *sessionScope, sess store.Session) (ctrl.Result, error) {
	switch sess.Status {
	case store.StatusFinalized:
		return r.markFinalized(ctx, s)
	case store.StatusExpired:
		return r.expire(ctx, s)
	case store.StatusFailed:
		if s.us.Status.Phase != uploadsv1.PhaseFailed {
			r.markFailed(s, "an S3 multipart upload of the session is lost; what it held was removed")
		}
		return ctrl.Result{}, nil
	case store.StatusFinalizing:
		if s.us.Status.Phase != uploadsv1.PhaseFinalizing {
			s.setPhase(uploadsv1.PhaseFinalizing, "a finalize holds the lock")
			s.us.Status.FinalizingAt = timePtr(sess.FinalizingAt)
			s.setCondition(uploadsv1.ConditionFinalized, false, uploadsv1.ReasonFinalizing, "finalize in progress")
			s.event(corev1.EventTypeNormal, uploadsv1.ReasonFinalizing, "Finalize", "Finalize lock taken")
		}
		// The loop runs the new phase's step at once; the requeue only
		// counts when the phase was already PostgreSQL's.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	case store.StatusActive:
		if s.us.Status.Phase == uploadsv1.PhaseFinalizing {
			// The finalize failed and released its lock.
			s.setPhase(uploadsv1.PhaseActive, "finalize did not complete; lock released")
			s.us.Status.FinalizingAt = nil
		}
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	// Pending or deleting: nothing for the resource to show; a delete in
	// progress ends with the resource's own deletion.
	return ctrl.Result{RequeueAfter: r.resync()}, nil
}

// finalize runs the one finalize implementation and records its outcome.
func (r *UploadSessionReconciler) finalize(ctx context.Context, s *sessionScope, req uploads.FinalizeRequest) (ctrl.Result, error) {
	res, err := r.Uploads.Finalize(ctx, req)
	if err == nil {
		return r.markFinalized(ctx, s)
	}
	step, ok := finalizeSteps[uploads.ClassifyFinalize(res, err)]
	if !ok { // a test holds every Outcome to a row
		step = finalizeRetry
	}
	return step(ctx, r, s, err)
}

// finalizeStep is what the reconciler does after a finalize ended in one
// outcome.
type finalizeStep func(ctx context.Context, r *UploadSessionReconciler, s *sessionScope, err error) (ctrl.Result, error)

// finalizeSteps is the reconciler's answer to each failed finalize: a
// condition the tenant can act on and a requeue, or the error for the
// controller's backoff. (Success marks the resource Finalized.)
var finalizeSteps = map[uploads.Outcome]finalizeStep{
	uploads.OutcomeCreated:  finalizeRetry, // not an error: handled before the table
	uploads.OutcomeReplayed: finalizeRetry,
	uploads.OutcomeIncomplete: func(ctx context.Context, r *UploadSessionReconciler, s *sessionScope, err error) (ctrl.Result, error) {
		var e *uploads.IncompleteError
		errors.As(err, &e)
		r.blockFinalize(ctx, s, uploadsv1.ReasonIncompleteUpload, session.SummarizeMissing(e.Missing), "")
		return ctrl.Result{RequeueAfter: r.resync()}, nil
	},
	uploads.OutcomeWrongPartSize: func(ctx context.Context, r *UploadSessionReconciler, s *sessionScope, err error) (ctrl.Result, error) {
		// A direct session's part in S3 has the wrong size: it counts as
		// missing until the client sends it again.
		var e *uploads.PartSizeError
		errors.As(err, &e)
		r.blockFinalize(ctx, s, uploadsv1.ReasonIncompleteUpload, e.Error(), "")
		return ctrl.Result{RequeueAfter: r.resync()}, nil
	},
	uploads.OutcomeChecksumMismatch: func(ctx context.Context, r *UploadSessionReconciler, s *sessionScope, err error) (ctrl.Result, error) {
		var e *uploads.ChecksumMismatchError
		errors.As(err, &e)
		r.blockFinalize(ctx, s, uploadsv1.ReasonChecksumMismatch, checksumMessage(e), "")
		return ctrl.Result{RequeueAfter: r.resync()}, nil
	},
	uploads.OutcomeSlugConflict: func(ctx context.Context, r *UploadSessionReconciler, s *sessionScope, err error) (ctrl.Result, error) {
		var e *uploads.SlugConflictError
		errors.As(err, &e)
		msg := fmt.Sprintf("slug %q is taken for %s; %q is free (retitle, e.g. %q)", e.Slug, s.us.Spec.Owner,
			e.Suggested, s.us.Spec.Finalize.Title+" (1)")
		r.blockFinalize(ctx, s, uploadsv1.ReasonSlugConflict, msg, e.Suggested)
		return ctrl.Result{RequeueAfter: r.resync()}, nil
	},
	uploads.OutcomeInProgress: func(_ context.Context, _ *UploadSessionReconciler, _ *sessionScope, err error) (ctrl.Result, error) {
		var e *uploads.InProgressError
		errors.As(err, &e)
		return ctrl.Result{RequeueAfter: e.RetryAfter}, nil
	},
	uploads.OutcomeExpired: func(ctx context.Context, r *UploadSessionReconciler, s *sessionScope, _ error) (ctrl.Result, error) {
		return r.expire(ctx, s)
	},
	uploads.OutcomeUploadLost: func(ctx context.Context, r *UploadSessionReconciler, s *sessionScope, err error) (ctrl.Result, error) {
		var e *uploads.UploadLostError
		errors.As(err, &e)
		return r.followLostUpload(ctx, s, e)
	},
	uploads.OutcomeS3Unavailable: func(ctx context.Context, r *UploadSessionReconciler, s *sessionScope, err error) (ctrl.Result, error) {
		// What S3 said stays in the operator's log (the returned error);
		// the tenant's resource gets a stable message.
		r.blockFinalize(ctx, s, uploadsv1.ReasonS3Unavailable, msgS3Unavailable, "")
		return ctrl.Result{}, err
	},
	uploads.OutcomeNotActive: func(_ context.Context, _ *UploadSessionReconciler, _ *sessionScope, _ error) (ctrl.Result, error) {
		// Another finalize or an expiry moved the session on between the
		// reads; the next reconcile follows PostgreSQL. Nothing else may
		// wake this resource (the other party's replica may have died), so
		// it asks for that reconcile itself.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	},
	uploads.OutcomeTimedOut: finalizeRetry,
	uploads.OutcomeNotFound: finalizeRetry,
	uploads.OutcomeInternal: finalizeRetry,
}

// finalizeRetry records that the step failed and hands the error to the
// controller's backoff.
func finalizeRetry(_ context.Context, _ *UploadSessionReconciler, s *sessionScope, err error) (ctrl.Result, error) {
	s.event(corev1.EventTypeWarning, uploadsv1.ReasonFinalizeFailed, "Finalize", "%s", msgRetrying)
	return ctrl.Result{}, err
}

// checksumMessage tells the tenant which file is not the one declared and
// what to send again.
func checksumMessage(e *uploads.ChecksumMismatchError) string {
	resend := "send its wrong parts again"
	if e.ResendAll {
		resend = "its upload started over: send every part of it again"
	}
	return fmt.Sprintf("file %s: its %s is %s, not the %s declared; %s", e.FileID, e.Algorithm, e.Actual, e.Expected, resend)
}

// followLostUpload shows Failed, a terminal phase, only once PostgreSQL says
// the session failed. The engine marks it so when it can; when it could not
// (PostgreSQL refused the write) its lock goes stale and whoever takes it
// over finds the lost upload again, and the resource must still be
// reconciled to do that.
func (r *UploadSessionReconciler) followLostUpload(ctx context.Context, s *sessionScope, lost *uploads.UploadLostError) (ctrl.Result, error) {
	sess, err := r.Uploads.Session(ctx, s.id)
	if err != nil {
		return ctrl.Result{}, err
	}
	if sess.Status != store.StatusFailed {
		log.FromContext(ctx).Info("an S3 multipart upload is lost but the session is not marked failed yet; following PostgreSQL",
			"fileId", lost.FileID, "status", sess.Status)
		return ctrl.Result{RequeueAfter: r.resync()}, nil
	}
	r.markFailed(s, fmt.Sprintf("the S3 multipart upload of file %s is lost; the session cannot be finalized", lost.FileID))
	return ctrl.Result{}, nil
}

// Messages for tenants' resources when a dependency fails: what failed and
// that it is retried, never the dependency's own error text (addresses, keys,
// SQL), which goes to the operator's log.
const (
	msgS3Unavailable = "S3 is unavailable; the operator retries (details in the operator's log)"
	msgRetrying      = "the operator could not complete this step; it retries (details in the operator's log)"
)

// markFailed moves the resource to Failed: its session lost an S3 multipart
// upload and can never be finalized (the engine has marked it failed in
// PostgreSQL and removed what it held).
func (r *UploadSessionReconciler) markFailed(s *sessionScope, msg string) {
	s.setPhase(uploadsv1.PhaseFailed, msg)
	s.us.Status.FinalizingAt = nil
	s.setCondition(uploadsv1.ConditionUploadsReady, false, uploadsv1.ReasonUploadLost, msg)
	s.setCondition(uploadsv1.ConditionFinalized, false, uploadsv1.ReasonUploadLost, msg)
	s.event(corev1.EventTypeWarning, uploadsv1.ReasonUploadLost, "Finalize", "%s", msg)
}

// blockFinalize records why a requested finalize cannot proceed; the phase
// stays Active.
func (r *UploadSessionReconciler) blockFinalize(ctx context.Context, s *sessionScope, reason, msg, suggested string) {
	cur := &s.us.Status
	if c := meta.FindStatusCondition(cur.Conditions, uploadsv1.ConditionFinalized); c != nil && c.Reason == reason && c.Message == msg &&
		cur.Phase == uploadsv1.PhaseActive && cur.SuggestedSlug == suggested {
		return // already said
	}
	log.FromContext(ctx).Info("finalize blocked", "reason", reason, "message", msg)
	s.setPhase(uploadsv1.PhaseActive, "finalize blocked: "+reason)
	cur.FinalizingAt = nil
	cur.SuggestedSlug = suggested
	s.setCondition(uploadsv1.ConditionFinalized, false, reason, msg)
	s.event(corev1.EventTypeWarning, reason, "Finalize", "%s", msg)
}

// markFinalized copies the committed MOC into the status.
func (r *UploadSessionReconciler) markFinalized(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	moc, err := r.Uploads.MOC(ctx, s.id)
	if err != nil {
		return ctrl.Result{}, err
	}
	sess, err := r.Uploads.Session(ctx, s.id)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.refreshProgress(ctx, s, sess); err != nil {
		return ctrl.Result{}, err
	}
	st := &s.us.Status
	s.setPhase(uploadsv1.PhaseFinalized, "MOC "+moc.Slug+" created")
	st.MocID, st.Slug, st.SuggestedSlug, st.FinalizingAt = moc.ID.String(), moc.Slug, "", nil
	st.FinalizedAt = timePtr(sess.FinalizedAt)
	s.setCondition(uploadsv1.ConditionFinalized, true, uploadsv1.ReasonFinalizeSucceeded,
		fmt.Sprintf("MOC %s (%s) with %d file(s)", moc.Slug, moc.ID, len(moc.Files)))
	log.FromContext(ctx).Info("session finalized", "mocId", moc.ID.String(), "slug", moc.Slug)
	s.event(corev1.EventTypeNormal, uploadsv1.ReasonFinalizeSucceeded, "Finalize",
		"Finalized into MOC %q (%s) with %d file(s)", moc.Slug, moc.ID, len(moc.Files))
	return ctrl.Result{}, nil
}

// expire aborts the S3 uploads and moves the session to Expired.
func (r *UploadSessionReconciler) expire(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	ok, err := r.Uploads.Expire(ctx, log.FromContext(ctx), s.id)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !ok {
		return ctrl.Result{RequeueAfter: time.Second}, nil // the session moved on (a finalize holds the lock)
	}
	s.setPhase(uploadsv1.PhaseExpired, "not finalized before expiresAt; S3 uploads aborted")
	s.setCondition(uploadsv1.ConditionUploadsReady, false, uploadsv1.ReasonUploadsAborted, "expired; S3 multipart uploads aborted")
	s.setCondition(uploadsv1.ConditionFinalized, false, uploadsv1.ReasonExpired, "expired before finalization")
	s.event(corev1.EventTypeWarning, uploadsv1.ReasonExpired, "Expire",
		"Session expired at %s; S3 multipart uploads aborted", s.us.Status.ExpiresAt)
	return ctrl.Result{}, nil
}

// refreshProgress copies the received parts and bytes from PostgreSQL (or,
// for a direct session, S3's listing) into the status.
func (r *UploadSessionReconciler) refreshProgress(ctx context.Context, s *sessionScope, sess store.Session) error {
	prog, err := r.Uploads.Progress(ctx, sess)
	if err != nil {
		return err
	}
	st := &s.us.Status
	for i := range st.Files {
		fid, err := uuid.Parse(st.Files[i].FileID)
		if err != nil {
			continue
		}
		p := prog[fid]
		st.Files[i].PartsReceived, st.Files[i].BytesReceived = int32(min(p.PartsReceived, session.MaxParts)), p.BytesReceived //nolint:gosec // at most 10,000
	}
	st.Progress = progress(st.Files)
	return nil
}

// now is the engine's session clock (uploads.Service.Now): one clock for
// expiry and retention on the HTTP and the reconciler's side alike.
func (r *UploadSessionReconciler) now() time.Time { return r.Uploads.Now() }

func timePtr(t *time.Time) *metav1.Time {
	if t == nil {
		return nil
	}
	mt := metav1.NewTime(*t)
	return &mt
}
