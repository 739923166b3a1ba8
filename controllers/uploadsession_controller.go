// Package controllers holds the UploadSession reconciler.
package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/logging"
	"github.com/mocs-dev/upload-operator/internal/sessionspec"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// Finalizer keeps a session's custom resource until what it holds in S3 is
// removed.
const Finalizer = uploadsv1.Finalizer

// UploadSessionReconciler moves UploadSessions through their phases:
//
//	Pending ──activate──▶ Active ──finalize──▶ Finalizing ──commit──▶ Finalized
//	   │                    │  └──expiresAt──▶ Expired
//	   └──invalid spec──▶ Failed
type UploadSessionReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder recorder.EventRecorder
	Uploads  Engine
	// Resync is how often an Active or Finalizing session is looked at again
	// even without events: a replica that died after committing (or while
	// holding the lock) sends no event, and PostgreSQL is the truth.
	Resync time.Duration
	// Retention is how long Finalized resources are kept
	// (SESSION_RETENTION); the MOC rows and objects stay after.
	Retention time.Duration
	// ExpiredRetention is how long Expired resources are kept
	// (EXPIRED_RETENTION): they hold nothing any more, and a loop of sessions
	// left to expire must not pile up in etcd and every informer's cache.
	ExpiredRetention time.Duration
	// Timeout bounds one reconcile (RECONCILE_TIMEOUT, default 5m), so a
	// dependency that accepts connections and never answers cannot hold a
	// worker forever; every S3 and SQL call also has a deadline of its own.
	Timeout time.Duration
	// Admission holds declared sessions to the upload API's rules (nil:
	// none).
	Admission *Admission
}

// DefaultReconcileTimeout bounds one reconcile when Timeout is unset. A
// declarative finalize cut short by it resumes where it stopped.
const DefaultReconcileTimeout = 5 * time.Minute

// reconcileRetention finishes what a terminal session left to do and deletes
// its resource once its retention is over: SESSION_RETENTION after
// finalization (the session stays readable over HTTP from PostgreSQL),
// EXPIRED_RETENTION after expiry or failure (its rows go with it; a failure
// counts from expiresAt, when the session would have expired anyway, or from
// the resource's creation when it never became active). A failed or expired
// session whose removal from S3 was cut off has it finished first.
func (r *UploadSessionReconciler) reconcileRetention(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	var since *metav1.Time
	retention := r.ExpiredRetention
	switch s.us.Status.Phase {
	case uploadsv1.PhaseFinalized:
		since, retention = s.us.Status.FinalizedAt, r.Retention
		if res, held := r.verifyMOC(ctx, s); held {
			return res, nil
		}
	case uploadsv1.PhaseExpired:
		since = s.us.Status.ExpiresAt
	case uploadsv1.PhaseFailed:
		since = cmp.Or(s.us.Status.ExpiresAt, &s.us.CreationTimestamp)
	}
	if s.us.Status.Phase == uploadsv1.PhaseExpired || s.us.Status.Phase == uploadsv1.PhaseFailed {
		if err := r.finishRemoval(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	if since == nil || retention <= 0 {
		return ctrl.Result{}, nil
	}
	if wait := since.Add(retention).Sub(r.now()); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	if s.base.Status.Phase != s.us.Status.Phase {
		// This reconcile reached the terminal phase (the operator was down
		// past the retention): write it first, so that those waiting for
		// Finalized or Expired see it before the resource goes.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	log.FromContext(ctx).Info("retention over; deleting the resource", "phase", s.us.Status.Phase, "retention", retention.String())
	if err := r.Delete(ctx, s.us); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s.released = true
	r.Recorder.Eventf(s.us, nil, corev1.EventTypeNormal, "RetentionExpired", "Delete", "Deleted after a retention of %s", retention)
	return ctrl.Result{}, nil
}

// verifyMOC compares the MOC the resource reports with PostgreSQL's and makes
// it again if PostgreSQL lost it (a failover to a replica that had not
// received the commit). held is true while it is missing: the resource then
// says so (Finalized False, MOCMissing) and is kept, whatever its retention,
// since deleting it would take the last record of the MOC.
func (r *UploadSessionReconciler) verifyMOC(ctx context.Context, s *sessionScope) (ctrl.Result, bool) {
	mocID, err := uuid.Parse(s.us.Status.MocID)
	if err != nil {
		return ctrl.Result{}, false
	}
	restored, err := r.Uploads.RestoreMOC(ctx, s.id, mocID)
	var inProgress *uploads.InProgressError
	switch {
	case errors.As(err, &inProgress):
		return ctrl.Result{RequeueAfter: inProgress.RetryAfter}, true
	case err != nil:
		log.FromContext(ctx).Error(err, "the MOC this resource reports is not in PostgreSQL; the resource is kept")
		msg := fmt.Sprintf("MOC %s is not in PostgreSQL and could not be made again yet; nothing in S3 is removed and the resource is kept (details in the operator's log)", mocID)
		s.setCondition(uploadsv1.ConditionFinalized, false, uploadsv1.ReasonMOCMissing, msg)
		s.event(corev1.EventTypeWarning, uploadsv1.ReasonMOCMissing, "Verify", "%s", msg)
		return ctrl.Result{RequeueAfter: r.resync()}, true
	case restored:
		msg := fmt.Sprintf("PostgreSQL had lost MOC %s (%s); it was made again from the objects in S3", s.us.Status.Slug, mocID)
		s.setCondition(uploadsv1.ConditionFinalized, true, uploadsv1.ReasonMOCRestored, msg)
		s.event(corev1.EventTypeWarning, uploadsv1.ReasonMOCRestored, "Verify", "%s", msg)
	default:
		if c := meta.FindStatusCondition(s.us.Status.Conditions, uploadsv1.ConditionFinalized); c != nil && c.Reason == uploadsv1.ReasonMOCMissing {
			s.setCondition(uploadsv1.ConditionFinalized, true, uploadsv1.ReasonFinalizeSucceeded, "MOC "+s.us.Status.Slug+" is in PostgreSQL again")
		}
	}
	return ctrl.Result{}, false
}

// finishRemoval finishes the removal from S3 of a failed or expired session
// that was cut off (the engine recorded it pending with the status change).
func (r *UploadSessionReconciler) finishRemoval(ctx context.Context, s *sessionScope) error {
	sess, err := r.Uploads.Session(ctx, s.id)
	if errors.Is(err, uploads.ErrSessionNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := r.Uploads.FinishRemoval(ctx, log.FromContext(ctx), sess); err != nil {
		s.event(corev1.EventTypeWarning, "RemovalFailed", "Remove", "%s", msgRetrying)
		return fmt.Errorf("remove what session %s holds in S3: %w", s.id, err)
	}
	return nil
}

// The operator's permissions, least privilege: sessions everywhere (create: the
// upload API creates sessions in SESSION_NAMESPACE; delete: retention),
// uploadsessions/owner assign (it creates them in its callers' names, which
// the admission policy allows only to those granted it cluster-wide), their
// status and finalizers;
// Events; TokenReviews (the upload API's callers) and SubjectAccessReviews
// (who may read /metrics). Leader election's Leases are not here: a Role in the
// operator's own namespace grants them (config/rbac/leader_election_role.yaml).
// +kubebuilder:rbac:groups=uploads.mocs.dev,resources=uploadsessions,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=uploads.mocs.dev,resources=uploadsessions/owner,verbs=assign
// +kubebuilder:rbac:groups=uploads.mocs.dev,resources=uploadsessions/status,verbs=patch
// +kubebuilder:rbac:groups=uploads.mocs.dev,resources=uploadsessions/finalizers,verbs=update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Reconcile reads like the state machine above: load, let go of a resource
// whose session belongs to another, handle deletion, make sure of the
// finalizer and label, then one step for the current phase, whose status is
// written once at its end.
func (r *UploadSessionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultReconcileTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	us := &uploadsv1.UploadSession{}
	if err := r.Get(ctx, req.NamespacedName, us); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	id, err := sessionID(us)
	if err != nil {
		return ctrl.Result{}, err
	}
	// The reconciler's lines for a session carry the correlation id of the
	// last request that touched it (else the session id), so one id follows a
	// session from the HTTP request into the reconciler.
	corr := us.Annotations[uploadsv1.CorrelationIDAnnotation]
	if !logging.ValidCorrelationID(corr) {
		corr = id.String()
	}
	logger := log.FromContext(ctx).WithValues("sessionId", id.String(), "correlationId", corr)
	ctx = log.IntoContext(ctx, logger)

	res, err := r.reconcileResource(ctx, us, id)
	if apierrors.IsConflict(err) {
		// The resource changed after this reconcile read it (most often the
		// upload API's activity annotation): go again from the newer object.
		// Not an error: every step is idempotent and nothing it did is lost.
		log.FromContext(ctx).V(1).Info("the resource changed during the reconcile; reconciling again")
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return res, err
}

// conflictRetry is how soon a reconcile refused for a stale view runs again.
const conflictRetry = 200 * time.Millisecond

func (r *UploadSessionReconciler) reconcileResource(ctx context.Context, us *uploadsv1.UploadSession, id uuid.UUID) (ctrl.Result, error) {
	// The session must be this resource's: a label copied from someone
	// else's session must not let this resource finalize or delete it.
	if err := r.Uploads.CheckBinding(ctx, id, refOf(us)); errors.Is(err, uploads.ErrBoundElsewhere) {
		if !us.DeletionTimestamp.IsZero() {
			return ctrl.Result{}, r.removeFinalizer(ctx, us)
		}
		return r.withStatus(ctx, us, id, r.refuseForeignSession)
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if !us.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, us, id)
	}
	if err := r.ensureFinalizerAndLabel(ctx, us, id); err != nil {
		return ctrl.Result{}, err
	}
	return r.withStatus(ctx, us, id, r.reconcilePhase)
}

// reconcilePhase is the state machine's dispatcher: it runs the step for the
// resource's phase and, when the step moved the phase on, the new phase's step
// (each decides its own timing: expiry, a declared finalize, retention), so a
// transition needs neither its own status write nor an event to be picked up.
// Steps never call each other; this loop alone decides what runs next. Its
// bound only guards against steps that hand the resource back and forth.
func (r *UploadSessionReconciler) reconcilePhase(ctx context.Context, s *sessionScope) (res ctrl.Result, err error) {
	for range maxStepsPerReconcile {
		before := s.us.Status.Phase
		res, err = r.stepFor(before)(ctx, s)
		if err != nil || s.released || s.us.Status.Phase == before {
			return res, err
		}
	}
	// The phase moved at every step: the last one's successor runs in a
	// reconcile of its own (a status write alone wakes nobody).
	if res.RequeueAfter <= 0 || res.RequeueAfter > time.Second {
		res.RequeueAfter = time.Second
	}
	return res, nil
}

// stepFor is the step that reconciles a resource in the given phase.
func (r *UploadSessionReconciler) stepFor(phase uploadsv1.Phase) func(context.Context, *sessionScope) (ctrl.Result, error) {
	switch phase {
	case "", uploadsv1.PhasePending:
		return r.reconcilePending
	case uploadsv1.PhaseActive:
		return r.reconcileActive
	case uploadsv1.PhaseFinalizing:
		return r.reconcileFinalizing
	default: // Finalized, Expired, Failed: terminal
		return r.reconcileRetention
	}
}

// maxStepsPerReconcile: Active with its rows gone → Pending → Active →
// Finalized → retention is the longest useful chain.
const maxStepsPerReconcile = 5

// sessionID is the session a resource stands for. Once the reconciler has
// recorded it in the status (which only the operator writes), that is the
// answer, whatever the label says later: the label is then put back. Before
// that, it is the label's UUID for sessions created over HTTP (named after
// it), else the object's UID for sessions created by manifest: stable, unique,
// and known before anything is written, so activation can be retried freely.
// A label that names someone else's session is caught by the binding check.
func sessionID(us *uploadsv1.UploadSession) (uuid.UUID, error) {
	if us.Status.SessionID != "" {
		return uuid.Parse(us.Status.SessionID)
	}
	if v := us.Labels[uploadsv1.SessionIDLabel]; v != "" {
		id, err := uuid.Parse(v)
		if err != nil {
			return uuid.Nil, fmt.Errorf("label %s=%q of %s/%s is not a UUID", uploadsv1.SessionIDLabel, v, us.Namespace, us.Name)
		}
		return id, nil
	}
	return uuid.Parse(string(us.UID))
}

// ensureFinalizerAndLabel adds the finalizer and puts the session-id label
// (back) in one metadata patch; the reconcile goes on with the patched object.
// The patch wakes the reconciler once more (finalizer and label changes are
// triggers, see reconcileTriggers); that reconcile finds the step done, or,
// reading an older copy, is refused its status write and goes again.
func (r *UploadSessionReconciler) ensureFinalizerAndLabel(ctx context.Context, us *uploadsv1.UploadSession, id uuid.UUID) error {
	if controllerutil.ContainsFinalizer(us, Finalizer) && us.Labels[uploadsv1.SessionIDLabel] == id.String() {
		return nil
	}
	orig := us.DeepCopy()
	controllerutil.AddFinalizer(us, Finalizer)
	if us.Labels == nil {
		us.Labels = map[string]string{}
	}
	us.Labels[uploadsv1.SessionIDLabel] = id.String()
	if err := r.Patch(ctx, us, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("add finalizer and label to %s/%s: %w", us.Namespace, us.Name, err)
	}
	return nil
}

// reconcilePending activates the session: rows in PostgreSQL and every S3
// multipart upload created. An invalid spec is terminal (Failed).
func (r *UploadSessionReconciler) reconcilePending(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	if s.us.Status.Phase == "" {
		s.us.Status.SessionID = s.id.String()
		s.setPhase(uploadsv1.PhasePending, "creating S3 multipart uploads")
		s.setCondition(uploadsv1.ConditionUploadsReady, false, uploadsv1.ReasonCreatingUploads, "creating S3 multipart uploads")
		s.setCondition(uploadsv1.ConditionFinalized, false, uploadsv1.ReasonNotRequested, "spec.finalize is not set")
	}
	admitted, maxActive, res, err := r.admitDeclared(ctx, s)
	if !admitted || err != nil {
		return res, err
	}
	req := sessionspec.Request(s.us, s.id)
	req.MaxActive = maxActive
	act, err := r.Uploads.Activate(ctx, req)
	if errors.Is(err, uploads.ErrTooManyActive) {
		// Counted exactly under the owner's lock: another session got the
		// last place since the look in admitDeclared.
		r.refuseQuota(s, fmt.Sprintf("owner %s has as many sessions not finalized, expired or failed as MAX_ACTIVE_SESSIONS_PER_USER allows", s.us.Spec.Owner))
		return ctrl.Result{RequeueAfter: quotaRetry}, nil
	}
	var invalid *uploads.ValidationError
	if errors.As(err, &invalid) {
		msg := fmt.Sprintf("invalid spec: %v", invalid.Details)
		s.setPhase(uploadsv1.PhaseFailed, msg)
		s.setCondition(uploadsv1.ConditionUploadsReady, false, uploadsv1.ReasonInvalidSpec, msg)
		s.event(corev1.EventTypeWarning, uploadsv1.ReasonInvalidSpec, "Activate", "%s", msg)
		return ctrl.Result{}, nil
	}
	if err != nil {
		s.event(corev1.EventTypeWarning, "ActivateFailed", "Activate", "%s", msgRetrying)
		return ctrl.Result{}, fmt.Errorf("activate session %s: %w", s.id, err)
	}
	applyActive(&s.us.Status, act)
	s.setPhase(uploadsv1.PhaseActive, "ready for parts")
	s.setCondition(uploadsv1.ConditionUploadsReady, true, uploadsv1.ReasonUploadsCreated,
		fmt.Sprintf("%d S3 multipart upload(s) created", len(act.Files)))
	log.FromContext(ctx).Info("session active: S3 multipart uploads created", "fileCount", len(act.Files))
	s.event(corev1.EventTypeNormal, uploadsv1.ReasonUploadsCreated, "Activate",
		"Created %d S3 multipart upload(s); session is Active until %s", len(act.Files), act.Session.ExpiresAt.UTC().Format(time.RFC3339))
	return ctrl.Result{RequeueAfter: act.Session.ExpiresAt.Sub(r.now())}, nil
}

// refuseForeignSession fails (once) a resource whose session-id label names
// a session bound to another resource, with the reason.
func (r *UploadSessionReconciler) refuseForeignSession(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	if c := meta.FindStatusCondition(s.us.Status.Conditions, uploadsv1.ConditionUploadsReady); c != nil && c.Reason == uploadsv1.ReasonSessionIDTaken {
		return ctrl.Result{}, nil
	}
	msg := fmt.Sprintf("label %s names session %s, which belongs to another resource; nothing was done to it",
		uploadsv1.SessionIDLabel, s.id)
	log.FromContext(ctx).Info("resource refused: its session id belongs to another resource")
	s.setPhase(uploadsv1.PhaseFailed, msg)
	s.setCondition(uploadsv1.ConditionUploadsReady, false, uploadsv1.ReasonSessionIDTaken, msg)
	s.event(corev1.EventTypeWarning, uploadsv1.ReasonSessionIDTaken, "Activate", "%s", msg)
	return ctrl.Result{}, nil
}

// removeFinalizer lets a resource being deleted go. A merge patch replaces
// the whole finalizer list, which is safe here: once deletion has begun the
// API server lets no finalizer be added, so the list sent can only lack ours
// (and one another controller removed meanwhile is refused, not re-added).
func (r *UploadSessionReconciler) removeFinalizer(ctx context.Context, us *uploadsv1.UploadSession) error {
	if !controllerutil.ContainsFinalizer(us, Finalizer) {
		return nil
	}
	orig := us.DeepCopy()
	controllerutil.RemoveFinalizer(us, Finalizer)
	if err := client.IgnoreNotFound(r.Patch(ctx, us, client.MergeFrom(orig))); err != nil {
		return fmt.Errorf("remove the finalizer of %s/%s: %w", us.Namespace, us.Name, err)
	}
	return nil
}

func refOf(us *uploadsv1.UploadSession) uploads.ResourceRef {
	return uploads.ResourceRef{Namespace: us.Namespace, Name: us.Name, UID: string(us.UID), Owner: us.Spec.Owner}
}

// SetupWithManager registers the reconciler.
func (r *UploadSessionReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&uploadsv1.UploadSession{}, builder.WithPredicates(reconcileTriggers())).
		Named("uploadsession").
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		Complete(r)
}
