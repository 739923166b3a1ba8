package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/metrics"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/sessionspec"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

type createSessionBody struct {
	Files         []session.File `json:"files"`
	PartSizeBytes *int64         `json:"partSizeBytes"`
	Transfer      string         `json:"transfer"`
}

type fileJSON struct {
	FileID    string       `json:"fileId"`
	Name      string       `json:"name"`
	SizeBytes int64        `json:"sizeBytes"`
	PartCount int          `json:"partCount"`
	Parts     []store.Part `json:"parts,omitempty"`
	// Checksum echoes the declared whole-file checksum.
	Checksum *session.FileChecksum `json:"checksum,omitempty"`
}

// declared is a file's whole-file checksum as GET shows it: the declared one,
// and once the file is completed the CRC64NVME of its object (the declared
// one, verified, or S3's own when none was declared).
func declared(f store.File) *session.FileChecksum {
	return session.NormalizeChecksum(&session.FileChecksum{CRC64NVME: cmp.Or(f.CompletedCRC64NVME, f.DeclaredCRC64NVME), SHA256: f.DeclaredSHA256})
}

// createSession: POST /api/mocs/uploads/sessions. The custom resource exists
// (named after the session id, in SESSION_NAMESPACE) and every S3 multipart
// upload is created before the 201, so parts can be sent at once.
func (a *API) createSession(w http.ResponseWriter, r *http.Request, u auth.User) {
	ctx := r.Context()
	log := logr.FromContextOrDiscard(ctx)
	if !a.mayUpload(u) {
		writeError(w, http.StatusForbidden, "FORBIDDEN", nil)
		return
	}
	if !a.allow(w, r, u, a.CreateLimiter, u.Name, a.CreateLimitCount, a.CreateLimitWindow) ||
		!a.allow(w, r, u, a.TenantCreateLimiter, session.TenantOf(u.Name), a.TenantCreateLimitCount, a.TenantCreateLimitWindow) {
		return
	}
	var body createSessionBody
	if !a.readJSON(w, r, &body) {
		return
	}
	id := uuid.New()
	req := uploads.Request{SessionID: id, Owner: u.Name, Files: body.Files, PartSizeBytes: body.PartSizeBytes,
		Transfer: body.Transfer, Namespace: a.SessionNamespace, Name: id.String()}
	if a.MaxActiveSessions > 0 && !u.Admin {
		req.MaxActive = a.MaxActiveSessions
		// A cheap look first; the exact count is taken with the session's rows.
		if n, err := a.Uploads.ActiveSessions(ctx, u.Name); err != nil {
			a.internal(w, r, err)
			return
		} else if n >= a.MaxActiveSessions {
			tooMany(w, activeCapRetryAfter, a.MaxActiveSessions, "active")
			return
		}
	}
	if _, err := a.Uploads.Validate(req); err != nil {
		var ve *uploads.ValidationError
		if errors.As(err, &ve) {
			validationError(w, ve.Details)
			return
		}
		a.internal(w, r, err)
		return
	}
	us := sessionspec.Resource(req)
	// Activation is bounded (the reconciler's delete waits at most
	// ActivationWindow for it) and does not stop half way if the client goes.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CreateTimeout)
	defer cancel()
	if err := a.Kube.Create(actx, us); err != nil {
		if details := invalidObject(err); details != nil {
			// The resource's schema refused something the checks above let
			// through (a limit raised past the CRD's, an unusually long user
			// name): the request is what is wrong.
			validationError(w, details)
			return
		}
		log.Error(err, "create UploadSession resource")
		writeError(w, http.StatusInternalServerError, "INTERNAL_ERROR", nil)
		return
	}
	if err := failpoint.Inject("create/after-resource"); err != nil {
		a.internal(w, r, err)
		return
	}
	// Activated from the resource, as the reconciler would activate it.
	maxActive := req.MaxActive
	req = sessionspec.Request(us, id)
	req.MaxActive = maxActive
	act, err := a.Uploads.Activate(actx, req)
	if err == nil {
		err = a.stillWanted(actx, us)
	}
	if err != nil {
		log.Error(err, "activate session", "sessionId", id.String())
		a.abandon(context.WithoutCancel(ctx), log, us)
		switch {
		case errors.Is(err, uploads.ErrTooManyActive):
			tooMany(w, activeCapRetryAfter, a.MaxActiveSessions, "active")
		case errors.Is(err, uploads.ErrSessionNotFound):
			writeError(w, http.StatusNotFound, "SESSION_NOT_FOUND", nil)
		case isS3(err):
			setRetryAfter(w, s3RetryAfterSeconds)
			writeError(w, http.StatusServiceUnavailable, "S3_UNAVAILABLE", map[string]any{"retryable": true})
		default:
			writeError(w, http.StatusInternalServerError, "INTERNAL_ERROR", nil)
		}
		return
	}
	log.Info("session created", "sessionId", id.String(), "fileCount", len(act.Files), "partSizeBytes", act.Session.PartSizeBytes)
	files := make([]fileJSON, len(act.Files))
	for i, f := range act.Files {
		files[i] = fileJSON{FileID: f.ID.String(), Name: f.Name, SizeBytes: f.SizeBytes, PartCount: f.PartCount, Checksum: declared(f)}
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"sessionId": id.String(), "status": act.Session.Status, "partSizeBytes": act.Session.PartSizeBytes,
		"expiresAt": act.Session.ExpiresAt.UTC().Format(time.RFC3339Nano), "transfer": act.Session.Transfer, "files": files,
	})
}

// activeCapRetryAfter is what a client over the active-session cap is told
// to wait: sessions end when they are finalized or expire, which no server
// can foresee; half a minute is a polite pace to ask again.
const activeCapRetryAfter = 30

// mayUpload: when UPLOAD_ALLOWED_GROUPS is set, only its members (and
// admins) may create sessions, send parts, ask for part URLs and finalize: a
// caller removed from the groups cannot go on with sessions it opened before.
func (a *API) mayUpload(u auth.User) bool {
	if len(a.UploadGroups) == 0 || u.Admin {
		return true
	}
	return slices.ContainsFunc(u.Groups, func(g string) bool { return slices.Contains(a.UploadGroups, g) })
}

// invalidObject turns the API server's refusal of an invalid object into
// VALIDATION_ERROR details (nil for any other error).
func invalidObject(err error) []session.FieldError {
	if !apierrors.IsInvalid(err) {
		return nil
	}
	var details []session.FieldError
	if st, ok := err.(apierrors.APIStatus); ok && st.Status().Details != nil {
		for _, c := range st.Status().Details.Causes {
			details = append(details, session.FieldError{Field: strings.TrimPrefix(c.Field, "spec."), Message: c.Message})
		}
	}
	if len(details) == 0 {
		details = []session.FieldError{{Field: "body", Message: "is not a valid session"}}
	}
	return details
}

// CreateTimeout bounds a session's creation over HTTP: the resource, the rows
// and every S3 multipart upload.
const CreateTimeout = uploads.ActivationTimeout

// stillWanted checks, on the API server itself, that the session's resource
// was not deleted while it was being activated: a delete that came first found
// no rows to remove, so what the activation created is this request's to undo.
func (a *API) stillWanted(ctx context.Context, us *uploadsv1.UploadSession) error {
	cur := &uploadsv1.UploadSession{}
	err := a.reader().Get(ctx, client.ObjectKeyFromObject(us), cur)
	switch {
	case apierrors.IsNotFound(err):
		return uploads.ErrSessionNotFound
	case err != nil:
		return fmt.Errorf("read back UploadSession %s: %w", us.Name, err)
	case !cur.DeletionTimestamp.IsZero() || cur.UID != us.UID:
		return uploads.ErrSessionNotFound
	}
	return nil
}

// abandon undoes a creation that did not complete. The resource is deleted
// first, so the reconciler (which owns the finalizer) will not activate it
// again; what the session holds is removed now; then the resource is marked
// as no longer being activated, so the reconciler's delete need not wait for
// this request and releases it at once.
func (a *API) abandon(ctx context.Context, log logr.Logger, us *uploadsv1.UploadSession) {
	// The client is waiting for its answer, and the creator's request has a
	// bound of its own: so has the clean-up. What it leaves, the reconciler's
	// delete finishes once the activation window is over.
	ctx, cancel := context.WithTimeout(ctx, uploads.ActivationTimeout)
	defer cancel()
	id, _ := uuid.Parse(us.Name)
	if err := a.Kube.Delete(ctx, us); err != nil && !apierrors.IsNotFound(err) {
		log.Error(err, "delete abandoned UploadSession resource", "sessionId", us.Name)
	}
	if err := a.Uploads.Discard(ctx, log, id); err != nil {
		// The reconciler's delete finishes the job once the activation window is over.
		log.Error(err, "could not remove what an abandoned session holds", "sessionId", us.Name)
		return
	}
	patch := client.RawPatch(types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"`+uploadsv1.CreatedByAPIAnnotation+`":null}}}`))
	if err := a.Kube.Patch(ctx, us, patch); err != nil && !apierrors.IsNotFound(err) {
		log.Error(err, "mark abandoned UploadSession resource", "sessionId", us.Name)
	}
}

// getSession: GET /api/mocs/uploads/sessions/{sessionId} — what was received,
// so a client can resume. Answered from PostgreSQL, so a finalized session
// stays readable after its custom resource is gone.
func (a *API) getSession(w http.ResponseWriter, r *http.Request, u auth.User) {
	ctx := r.Context()
	if a.GetLimiter != nil {
		// Each GET of a direct session lists every file in S3: a poll loop
		// gets what it needs, a flood gets 429.
		if ok, wait := a.GetLimiter.Allow(u.Name); !ok {
			metrics.RateLimitRefusals.Inc()
			tooMany(w, retryAfterSeconds(wait), a.GetLimiter.Limit, a.GetLimitWindow)
			return
		}
	}
	sess, ok := a.ownedSession(w, r, u, r.PathValue("sessionId"))
	if !ok {
		return
	}
	if a.GetLimiter != nil && sess.Transfer == store.TransferDirect {
		// A direct session's GET lists each of its files in S3: it costs
		// the limit one per file (the first was charged above).
		n, err := a.Uploads.DB.FileCount(ctx, sess.ID)
		if err != nil {
			a.internal(w, r, err)
			return
		}
		if n > 1 {
			if ok, wait := a.GetLimiter.AllowN(u.Name, n-1); !ok {
				metrics.RateLimitRefusals.Inc()
				tooMany(w, retryAfterSeconds(wait), a.GetLimiter.Limit, a.GetLimitWindow)
				return
			}
		}
	}
	files, parts, err := a.Uploads.Received(ctx, sess)
	if isS3(err) {
		logr.FromContextOrDiscard(ctx).Error(err, "list the parts S3 holds")
		setRetryAfter(w, s3RetryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "S3_UNAVAILABLE", map[string]any{"retryable": true})
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := make([]fileJSON, len(files))
	for i, f := range files {
		p := parts[f.ID]
		if p == nil {
			p = []store.Part{}
		}
		out[i] = fileJSON{FileID: f.ID.String(), Name: f.Name, SizeBytes: f.SizeBytes, PartCount: f.PartCount, Parts: p, Checksum: declared(f)}
	}
	status := sess.Status
	if sess.Expired(a.Uploads.Now()) {
		status = store.StatusExpired // the reconciler will catch up
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"sessionId": sess.ID.String(), "status": status, "phase": phaseOf(status),
		"partSizeBytes": sess.PartSizeBytes, "expiresAt": sess.ExpiresAt.UTC().Format(time.RFC3339Nano),
		"transfer": sess.Transfer, "files": out,
	})
}

// ownedSession loads a session the user may see; anything else is 404 (ids
// that are not UUIDs, someone else's session).
func (a *API) ownedSession(w http.ResponseWriter, r *http.Request, u auth.User, raw string) (store.Session, bool) {
	id, err := uuid.Parse(raw)
	if err != nil {
		writeError(w, http.StatusNotFound, "SESSION_NOT_FOUND", nil)
		return store.Session{}, false
	}
	sess, err := a.Uploads.Session(r.Context(), id)
	if errors.Is(err, uploads.ErrSessionNotFound) || (err == nil && !u.CanAccess(sess.UserID)) {
		writeError(w, http.StatusNotFound, "SESSION_NOT_FOUND", nil)
		return store.Session{}, false
	}
	if err != nil {
		a.internal(w, r, err)
		return store.Session{}, false
	}
	return sess, true
}

func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	logr.FromContextOrDiscard(r.Context()).Error(err, "internal error")
	writeError(w, http.StatusInternalServerError, "INTERNAL_ERROR", nil)
}

func phaseOf(status string) string {
	if status == "" {
		return ""
	}
	return strings.ToUpper(status[:1]) + status[1:]
}

func isS3(err error) bool {
	var s3e *uploads.S3Error
	return errors.As(err, &s3e)
}
