package webhook

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

type createSessionBody struct {
	Files         []session.File `json:"files"`
	PartSizeBytes *int64         `json:"partSizeBytes"`
}

type fileJSON struct {
	FileID    string       `json:"fileId"`
	Name      string       `json:"name"`
	SizeBytes int64        `json:"sizeBytes"`
	PartCount int          `json:"partCount"`
	Parts     []store.Part `json:"parts,omitempty"`
}

// createSession: POST /api/mocs/uploads/sessions. The custom resource exists
// (named after the session id, in SESSION_NAMESPACE) and every S3 multipart
// upload is created before the 201, so parts can be sent at once.
func (a *API) createSession(w http.ResponseWriter, r *http.Request, u auth.User) {
	ctx := r.Context()
	log := logr.FromContextOrDiscard(ctx)
	var body createSessionBody
	if details := decodeJSON(r, &body); details != nil {
		validationError(w, details)
		return
	}
	id := uuid.New()
	req := uploads.Request{SessionID: id, Owner: u.Name, Files: body.Files, PartSizeBytes: body.PartSizeBytes,
		Namespace: a.SessionNamespace, Name: id.String()}
	if _, err := a.Uploads.Validate(req); err != nil {
		var ve *uploads.ValidationError
		if errors.As(err, &ve) {
			validationError(w, ve.Details)
			return
		}
		a.internal(w, r, err)
		return
	}
	us := &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Name: id.String(), Namespace: a.SessionNamespace,
			Labels: map[string]string{uploadsv1.SessionIDLabel: id.String()}},
		Spec: uploadsv1.UploadSessionSpec{Owner: u.Name, PartSizeBytes: body.PartSizeBytes},
	}
	for _, f := range body.Files {
		us.Spec.Files = append(us.Spec.Files, uploadsv1.FileSpec{Name: f.Name, ContentType: f.ContentType, SizeBytes: f.SizeBytes})
	}
	if err := a.Kube.Create(ctx, us); err != nil {
		log.Error(err, "create UploadSession resource")
		writeError(w, http.StatusInternalServerError, "INTERNAL_ERROR", nil)
		return
	}
	act, err := a.Uploads.Activate(ctx, req)
	if err != nil {
		log.Error(err, "activate session", "sessionId", id.String())
		// The resource's finalizer (if the reconciler added it yet) aborts
		// whatever was created; without it there is nothing in S3 to abort.
		_ = a.Kube.Delete(context.WithoutCancel(ctx), us)
		_ = a.Uploads.Discard(context.WithoutCancel(ctx), log, id)
		if isS3(err) {
			setRetryAfter(w, s3RetryAfterSeconds)
			writeError(w, http.StatusServiceUnavailable, "S3_UNAVAILABLE", map[string]any{"retryable": true})
			return
		}
		writeError(w, http.StatusInternalServerError, "INTERNAL_ERROR", nil)
		return
	}
	log.Info("session created", "sessionId", id.String(), "fileCount", len(act.Files), "partSizeBytes", act.Session.PartSizeBytes)
	files := make([]fileJSON, len(act.Files))
	for i, f := range act.Files {
		files[i] = fileJSON{FileID: f.ID.String(), Name: f.Name, SizeBytes: f.SizeBytes, PartCount: f.PartCount}
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"sessionId": id.String(), "status": act.Session.Status, "partSizeBytes": act.Session.PartSizeBytes,
		"expiresAt": act.Session.ExpiresAt.UTC().Format(time.RFC3339Nano), "files": files,
	})
}

// getSession: GET /api/mocs/uploads/sessions/{sessionId} — what was received,
// so a client can resume. Answered from PostgreSQL, so a finalized session
// stays readable after its custom resource is gone.
func (a *API) getSession(w http.ResponseWriter, r *http.Request, u auth.User) {
	ctx := r.Context()
	sess, ok := a.ownedSession(w, r, u, r.PathValue("sessionId"))
	if !ok {
		return
	}
	files, err := a.Uploads.DB.Files(ctx, sess.ID)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	parts, err := a.Uploads.DB.Parts(ctx, sess.ID)
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
		out[i] = fileJSON{FileID: f.ID.String(), Name: f.Name, SizeBytes: f.SizeBytes, PartCount: f.PartCount, Parts: p}
	}
	status := sess.Status
	if status == store.StatusActive && a.now().After(sess.ExpiresAt) {
		status = store.StatusExpired // the reconciler will catch up
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"sessionId": sess.ID.String(), "status": status, "phase": phaseOf(status),
		"partSizeBytes": sess.PartSizeBytes, "expiresAt": sess.ExpiresAt.UTC().Format(time.RFC3339Nano), "files": out,
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
