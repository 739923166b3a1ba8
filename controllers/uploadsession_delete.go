package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// reconcileDelete removes what an unfinalized session holds (S3 uploads and
// objects, its rows), then releases the resource. A finalized session loses
// nothing: its MOC rows and objects stay. Deleting a session while a finalize
// holds a live lock waits until that finalize ends; the engine claims the
// session in PostgreSQL, so no finalize can start once the removal has.
func (r *UploadSessionReconciler) reconcileDelete(ctx context.Context, us *uploadsv1.UploadSession, id uuid.UUID) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(us, Finalizer) {
		return ctrl.Result{}, nil
	}
	if wait := r.activationWindowLeft(ctx, us, id); wait > 0 {
		return ctrl.Result{RequeueAfter: min(wait, time.Second)}, nil
	}
	if us.Status.MocID != "" {
		return r.releaseFinalized(ctx, us, id)
	}
	err := r.Uploads.Discard(ctx, log.FromContext(ctx), id)
	var inProgress *uploads.InProgressError
	if errors.As(err, &inProgress) {
		// Said whatever the phase shows: whether the resource reads Finalizing
		// yet depends on which update came first. Repeats while the wait lasts
		// become one event series.
		r.Recorder.Eventf(us, nil, corev1.EventTypeNormal, "WaitingForFinalize", "Delete", "Deletion waits for the running finalize")
		return ctrl.Result{RequeueAfter: inProgress.RetryAfter}, nil
	}
	if err != nil {
		r.Recorder.Eventf(us, nil, corev1.EventTypeWarning, "AbortFailed", "Delete", "%s", msgRetrying)
		return ctrl.Result{}, fmt.Errorf("discard session %s: %w", id, err)
	}
	return ctrl.Result{}, r.removeFinalizer(ctx, us)
}

// activationWindowLeft is how long to wait before removing a session whose
// resource the upload API created and is perhaps still activating: with no
// rows yet, a removal now would find nothing, and the activation would then
// create rows and S3 uploads that nothing removes. The API request ends within
// uploads.ActivationTimeout (and clears the annotation if it gives up), so
// twice that is enough even if its replica died.
func (r *UploadSessionReconciler) activationWindowLeft(ctx context.Context, us *uploadsv1.UploadSession, id uuid.UUID) time.Duration {
	if us.Annotations[uploadsv1.CreatedByAPIAnnotation] == "" {
		return 0
	}
	left := us.CreationTimestamp.Add(2 * uploads.ActivationTimeout).Sub(r.now())
	if left <= 0 {
		return 0
	}
	if _, err := r.Uploads.Session(ctx, id); !errors.Is(err, uploads.ErrSessionNotFound) {
		return 0
	}
	return left
}

// releaseFinalized lets a resource that reports a MOC go, which takes nothing
// with it: the MOC rows and objects stay. It never removes what S3 holds for
// the session, even when PostgreSQL no longer shows the session finalized (a
// failover lost the commit): the MOC is made again from the objects first, and
// while that cannot be done the resource waits, saying why.
func (r *UploadSessionReconciler) releaseFinalized(ctx context.Context, us *uploadsv1.UploadSession, id uuid.UUID) (ctrl.Result, error) {
	mocID, err := uuid.Parse(us.Status.MocID)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("status.mocId %q of %s/%s: %w", us.Status.MocID, us.Namespace, us.Name, err)
	}
	restored, err := r.Uploads.RestoreMOC(ctx, id, mocID)
	var inProgress *uploads.InProgressError
	switch {
	case errors.As(err, &inProgress):
		return ctrl.Result{RequeueAfter: inProgress.RetryAfter}, nil
	case err != nil:
		log.FromContext(ctx).Error(err, "the MOC this resource reports is not in PostgreSQL; its objects stay and the resource waits")
		r.Recorder.Eventf(us, nil, corev1.EventTypeWarning, uploadsv1.ReasonMOCMissing, "Delete",
			"MOC %s is not in PostgreSQL and could not be made again yet; nothing in S3 is removed (details in the operator's log)", mocID)
		return ctrl.Result{RequeueAfter: r.resync()}, nil
	case restored:
		r.Recorder.Eventf(us, nil, corev1.EventTypeWarning, uploadsv1.ReasonMOCRestored, "Delete",
			"PostgreSQL had lost MOC %s; it was made again from the objects in S3", mocID)
	}
	return ctrl.Result{}, r.removeFinalizer(ctx, us)
}
