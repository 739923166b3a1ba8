package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// reconcileDelete aborts the S3 uploads of an unfinalized session and removes
// its rows, then releases the object. A finalized session loses nothing: its
// MOC rows and objects stay. Deleting a session while a finalize holds a fresh
// lock waits until that finalize ends.
func (r *UploadSessionReconciler) reconcileDelete(ctx context.Context, us *uploadsv1.UploadSession, id uuid.UUID) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(us, Finalizer) {
		return ctrl.Result{}, nil
	}
	sess, err := r.Uploads.DB.GetSession(ctx, id)
	if err == nil && sess.Status == store.StatusFinalizing && sess.FinalizingAt != nil {
		if wait := sess.FinalizingAt.Add(r.Uploads.StaleAfter()).Sub(r.now()); wait > 0 {
			r.Recorder.Eventf(us, nil, corev1.EventTypeNormal, "WaitingForFinalize", "Delete", "Deletion waits for the running finalize")
			return ctrl.Result{RequeueAfter: min(wait, 2*time.Second)}, nil
		}
	}
	if err := r.Uploads.Discard(ctx, log.FromContext(ctx), id); err != nil {
		r.Recorder.Eventf(us, nil, corev1.EventTypeWarning, "AbortFailed", "Delete", "%v", err)
		return ctrl.Result{}, fmt.Errorf("discard session %s: %w", id, err)
	}
	orig := us.DeepCopy()
	controllerutil.RemoveFinalizer(us, Finalizer)
	if err := r.Patch(ctx, us, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}
