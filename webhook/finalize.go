package webhook

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-logr/logr"

	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/metrics"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

type finalizeBody struct {
	UploadSessionID *string `json:"uploadSessionId"`
	Title           *string `json:"title"`
	Description     *string `json:"description"`
}

// RateLimiter decides whether a user's finalize request may proceed.
type RateLimiter interface {
	Allow(r *http.Request, user string) (ok bool, retryAfterSeconds int)
}

// finalize: POST /api/mocs/uploads/finalize, in the contract's order: auth
// (done), rate limit, body, session lookup, then the engine (replay, expiry,
// lock, completeness, slug, S3 completion, transaction).
func (a *API) finalize(w http.ResponseWriter, r *http.Request, u auth.User) {
	ctx := r.Context()
	if !a.mayUpload(u) {
		writeError(w, http.StatusForbidden, "FORBIDDEN", nil)
		return
	}
	if a.Limiter != nil && !u.Admin {
		if ok, retry := a.Limiter.Allow(r, u.Name); !ok {
			metrics.RateLimitRefusals.Inc()
			tooMany(w, retry, a.LimitCount, a.LimitWindow)
			return
		}
	}
	var body finalizeBody
	if !a.readJSON(w, r, &body) {
		return
	}
	if details := validateFinalize(body); details != nil {
		validationError(w, details)
		return
	}
	sess, ok := a.ownedSession(w, r, u, *body.UploadSessionID)
	if !ok {
		return
	}
	desc := ""
	if body.Description != nil {
		desc = *body.Description
	}
	// A client or load balancer that gives up must not cancel a finalize half
	// way (S3 completions done, nothing committed): it runs on a context of
	// its own, with its own deadline, and the request waits for it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.finalizeTimeout())
	defer cancel()
	res, err := a.Uploads.Finalize(fctx, uploads.FinalizeRequest{SessionID: sess.ID, Title: *body.Title, Description: desc})
	if sess.Namespace != "" && a.Notify != nil {
		a.Notify(sess.Namespace, sess.Name, w.Header().Get(CorrelationHeader))
	}
	if err != nil {
		a.finalizeFailed(w, r, err)
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, mocJSON(res.MOC))
}

// tooMany answers 429 RATE_LIMIT_EXCEEDED with retryAfter (and Retry-After),
// the limit and its window ("1m", or "active" for the active-session cap).
func tooMany(w http.ResponseWriter, retryAfter, limit int, window string) {
	setRetryAfter(w, retryAfter)
	writeError(w, http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED", map[string]any{
		"retryAfter": retryAfter, "limit": limit, "window": window,
	})
}

func validateFinalize(b finalizeBody) []session.FieldError {
	var d []session.FieldError
	if b.UploadSessionID == nil || *b.UploadSessionID == "" {
		d = append(d, session.FieldError{Field: "uploadSessionId", Message: "is required"})
	}
	title, desc := "", ""
	if b.Title != nil {
		title = *b.Title
	}
	if b.Description != nil {
		desc = *b.Description
	}
	return append(d, session.ValidateFinalize(title, desc)...)
}

func (a *API) finalizeFailed(w http.ResponseWriter, r *http.Request, err error) {
	var (
		inProgress *uploads.InProgressError
		incomplete *uploads.IncompleteError
		conflict   *uploads.SlugConflictError
		s3e        *uploads.S3Error
		notActive  *uploads.NotActiveError
		lost       *uploads.UploadLostError
		wrongSize  *uploads.PartSizeError
		mismatch   *uploads.ChecksumMismatchError
	)
	switch {
	case errors.As(err, &mismatch):
		resend := "changed-parts"
		if mismatch.ResendAll {
			resend = "all-parts"
		}
		writeError(w, http.StatusBadRequest, "CHECKSUM_MISMATCH", map[string]any{
			"fileId": mismatch.FileID, "algorithm": mismatch.Algorithm, "expected": mismatch.Expected,
			"actual": mismatch.Actual, "resend": resend,
		})
	case errors.Is(err, uploads.ErrSessionNotFound):
		writeError(w, http.StatusNotFound, "SESSION_NOT_FOUND", nil)
	case errors.Is(err, context.DeadlineExceeded):
		// The finalize ran out of FINALIZE_TIMEOUT; what it completed is
		// recorded and the next finalize carries on from there.
		logr.FromContextOrDiscard(r.Context()).Error(err, "finalize timed out")
		setRetryAfter(w, s3RetryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "S3_UNAVAILABLE", map[string]any{"retryable": true})
	case errors.Is(err, uploads.ErrExpired):
		writeError(w, http.StatusGone, "SESSION_EXPIRED", nil)
	case errors.As(err, &inProgress):
		secs := retryAfterSeconds(inProgress.RetryAfter)
		setRetryAfter(w, secs)
		writeError(w, http.StatusConflict, "FINALIZE_IN_PROGRESS", map[string]any{"retryAfter": secs})
	case errors.As(err, &wrongSize):
		writeError(w, http.StatusBadRequest, "INVALID_PART_SIZE", map[string]any{
			"fileId": wrongSize.FileID, "partNumber": wrongSize.PartNumber,
			"expectedBytes": wrongSize.Expected, "receivedBytes": wrongSize.Size,
		})
	case errors.As(err, &incomplete):
		// Bounded: the first part numbers of each file, with each file's count.
		listed, counts, truncated := session.TruncateMissing(incomplete.Missing, session.MaxMissingPerFile)
		writeError(w, http.StatusBadRequest, "INCOMPLETE_UPLOAD", map[string]any{
			"missingParts": listed, "missingPartCounts": counts, "truncated": truncated,
		})
	case errors.As(err, &conflict):
		writeError(w, http.StatusConflict, "SLUG_CONFLICT", map[string]any{
			"slug": conflict.Slug, "suggestedSlug": conflict.Suggested, "retryStrategy": a.SlugStrategy,
		})
	case errors.As(err, &s3e):
		setRetryAfter(w, s3RetryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "S3_UNAVAILABLE", map[string]any{"retryable": true})
	case errors.As(err, &notActive):
		writeError(w, http.StatusConflict, "SESSION_NOT_ACTIVE", map[string]any{"status": notActive.Status})
	case errors.As(err, &lost):
		writeError(w, http.StatusConflict, "UPLOAD_LOST", map[string]any{"fileId": lost.FileID})
	default:
		a.internal(w, r, err)
	}
}

type mocFileJSON struct {
	FileID    string `json:"fileId"`
	Name      string `json:"name"`
	S3Key     string `json:"s3Key"`
	SizeBytes int64  `json:"sizeBytes"`
	ETag      string `json:"etag"`
	// Checksum is what finalize verified: the CRC64NVME always (files of
	// direct sessions and of S3 stores that keep none aside), the SHA-256
	// when declared.
	Checksum *session.FileChecksum `json:"checksum,omitempty"`
}

func mocJSON(m store.MOC) map[string]any {
	files := make([]mocFileJSON, len(m.Files))
	for i, f := range m.Files {
		files[i] = mocFileJSON{FileID: f.FileID.String(), Name: f.Name, S3Key: f.S3Key, SizeBytes: f.SizeBytes, ETag: f.ETag,
			Checksum: session.NormalizeChecksum(&session.FileChecksum{CRC64NVME: f.ChecksumCRC64NVME, SHA256: f.ChecksumSHA256})}
	}
	return map[string]any{"mocId": m.ID.String(), "slug": m.Slug, "title": m.Title, "files": files}
}
