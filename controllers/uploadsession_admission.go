package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/ratelimit"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// Admission holds sessions declared with a manifest to the rules the upload
// API applies to sessions created over HTTP (contract §7): the allow-list of
// groups, the creation rate and the cap on active sessions, admins exempt. A
// refused session stays Pending with UploadsReady (and so Ready) False,
// reason NotAllowed or QuotaExceeded, and is looked at again when a quota
// may have room.
type Admission struct {
	// AdminGroups and UploadGroups are ADMIN_GROUPS and UPLOAD_ALLOWED_GROUPS.
	AdminGroups, UploadGroups []string
	// MaxActive is MAX_ACTIVE_SESSIONS_PER_USER (0: no cap).
	MaxActive int
	// CreateLimiter is SESSION_CREATE_RATE_LIMIT's limiter, shared with the
	// upload API (nil: no limit); TenantCreateLimiter is
	// SESSION_CREATE_RATE_LIMIT_PER_TENANT's.
	CreateLimiter, TenantCreateLimiter CreateLimiter
}

// CreateLimiter admits or refuses one creation by user.
type CreateLimiter interface {
	Allow(ctx context.Context, user string) ratelimit.Decision
}

// quotaRetry is when a session refused for the active-session cap is looked
// at again: sessions end when they are finalized or expire, which nothing
// announces to this resource.
const quotaRetry = 30 * time.Second

// serviceAccountGroups are the groups the API server gives a ServiceAccount
// owner's tokens; an owner that is no ServiceAccount has groups only its
// authenticator knows, so none can be assumed for it.
func serviceAccountGroups(owner string) []string {
	rest, ok := strings.CutPrefix(owner, "system:serviceaccount:")
	if !ok {
		return nil
	}
	ns, _, ok := strings.Cut(rest, ":")
	if !ok || ns == "" {
		return nil
	}
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
}

func intersects(a, b []string) bool {
	return slices.ContainsFunc(a, func(x string) bool { return slices.Contains(b, x) })
}

// admitDeclared decides whether a manifest's session may be activated now.
// ok false: the scope's status says why and res says when to look again.
// Resources the upload API created were admitted by it. A session whose rows
// exist was admitted before (a retried activation): it is not counted again.
func (r *UploadSessionReconciler) admitDeclared(ctx context.Context, s *sessionScope) (ok bool, maxActive int, res ctrl.Result, err error) {
	a := r.Admission
	if a == nil || s.us.Annotations[uploadsv1.CreatedByAPIAnnotation] != "" {
		return true, 0, ctrl.Result{}, nil
	}
	groups := serviceAccountGroups(s.us.Spec.Owner)
	if intersects(groups, a.AdminGroups) {
		return true, 0, ctrl.Result{}, nil
	}
	if len(a.UploadGroups) > 0 && !intersects(groups, a.UploadGroups) {
		r.refuse(s, uploadsv1.ReasonNotAllowed, fmt.Sprintf("owner %s is in none of UPLOAD_ALLOWED_GROUPS (%s)",
			s.us.Spec.Owner, strings.Join(a.UploadGroups, ", ")))
		return false, 0, ctrl.Result{}, nil
	}
	if _, err := r.Uploads.Session(ctx, s.id); err == nil {
		return true, a.MaxActive, ctrl.Result{}, nil
	} else if !errors.Is(err, uploads.ErrSessionNotFound) {
		return false, 0, ctrl.Result{}, fmt.Errorf("read session %s: %w", s.id, err)
	}
	if a.MaxActive > 0 {
		if n, err := r.Uploads.ActiveSessions(ctx, s.us.Spec.Owner); err != nil {
			return false, 0, ctrl.Result{}, err
		} else if n >= a.MaxActive {
			r.refuseQuota(s, fmt.Sprintf("owner %s has %d sessions not finalized, expired or failed (MAX_ACTIVE_SESSIONS_PER_USER)", s.us.Spec.Owner, n))
			return false, 0, ctrl.Result{RequeueAfter: quotaRetry}, nil
		}
	}
	if a.CreateLimiter != nil {
		if d := a.CreateLimiter.Allow(ctx, s.us.Spec.Owner); !d.Allowed {
			r.refuseQuota(s, fmt.Sprintf("owner %s created too many sessions (SESSION_CREATE_RATE_LIMIT); retrying in %s",
				s.us.Spec.Owner, d.RetryAfter.Round(time.Second)))
			return false, 0, ctrl.Result{RequeueAfter: max(d.RetryAfter, time.Second)}, nil
		}
	}
	if a.TenantCreateLimiter != nil {
		tenant := session.TenantOf(s.us.Spec.Owner)
		if d := a.TenantCreateLimiter.Allow(ctx, tenant); !d.Allowed {
			r.refuseQuota(s, fmt.Sprintf("tenant %s created too many sessions (SESSION_CREATE_RATE_LIMIT_PER_TENANT); retrying in %s",
				strings.TrimPrefix(strings.TrimPrefix(tenant, "namespace:"), "user:"), d.RetryAfter.Round(time.Second)))
			return false, 0, ctrl.Result{RequeueAfter: max(d.RetryAfter, time.Second)}, nil
		}
	}
	return true, a.MaxActive, ctrl.Result{}, nil
}

func (r *UploadSessionReconciler) refuseQuota(s *sessionScope, msg string) {
	r.refuse(s, uploadsv1.ReasonQuotaExceeded, msg)
}

// refuse keeps the session Pending with the reason; the Event is sent when
// the reason is new, not on every look again.
func (r *UploadSessionReconciler) refuse(s *sessionScope, reason, msg string) {
	var prevReason string // copied: setCondition changes the condition in place
	if c := meta.FindStatusCondition(s.us.Status.Conditions, uploadsv1.ConditionUploadsReady); c != nil {
		prevReason = c.Reason
	}
	s.setPhase(uploadsv1.PhasePending, msg)
	s.setCondition(uploadsv1.ConditionUploadsReady, false, reason, msg)
	if prevReason != reason {
		s.event(corev1.EventTypeWarning, reason, "Activate", "%s", msg)
	}
}
