package webhook

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

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

// allow answers 429 and counts the refusal when lim (if any) refuses key;
// admins are not limited.
func (a *API) allow(w http.ResponseWriter, r *http.Request, u auth.User, lim RateLimiter, key string, count int, window string) bool {
	if lim == nil || u.Admin {
		return true
	}
	ok, retry := lim.Allow(r, key)
	if !ok {
		metrics.RateLimitRefusals.Inc()
		tooMany(w, retry, count, window)
	}
	return ok
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
	if !a.allow(w, r, u, a.Limiter, u.Name, a.LimitCount, a.LimitWindow) {
		return
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
	answer, ok := finalizeAnswers[uploads.ClassifyFinalize(uploads.FinalizeResult{}, err)]
	if !ok { // a test holds every Outcome to a row
		a.internal(w, r, err)
		return
	}
	answer(a, w, r, err)
}

// finalizeAnswers is the HTTP answer to each finalize outcome (docs/api.md,
// "Finalize" and "Error codes"). The successes are answered by finalize
// itself.
var finalizeAnswers = map[uploads.Outcome]func(a *API, w http.ResponseWriter, r *http.Request, err error){
	uploads.OutcomeCreated:  func(a *API, w http.ResponseWriter, r *http.Request, err error) { a.internal(w, r, err) },
	uploads.OutcomeReplayed: func(a *API, w http.ResponseWriter, r *http.Request, err error) { a.internal(w, r, err) },
	uploads.OutcomeNotFound: func(_ *API, w http.ResponseWriter, _ *http.Request, _ error) {
		writeError(w, http.StatusNotFound, "SESSION_NOT_FOUND", nil)
	},
	uploads.OutcomeTimedOut: func(_ *API, w http.ResponseWriter, r *http.Request, err error) {
		// The finalize ran out of FINALIZE_TIMEOUT; what it completed is
		// recorded and the next finalize carries on from there.
		logr.FromContextOrDiscard(r.Context()).Error(err, "finalize timed out")
		setRetryAfter(w, s3RetryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "S3_UNAVAILABLE", map[string]any{"retryable": true})
	},
	uploads.OutcomeExpired: func(_ *API, w http.ResponseWriter, _ *http.Request, _ error) {
		writeError(w, http.StatusGone, "SESSION_EXPIRED", nil)
	},
	uploads.OutcomeInProgress: func(_ *API, w http.ResponseWriter, _ *http.Request, err error) {
		var e *uploads.InProgressError
		errors.As(err, &e)
		secs := retryAfterSeconds(e.RetryAfter)
		setRetryAfter(w, secs)
		writeError(w, http.StatusConflict, "FINALIZE_IN_PROGRESS", map[string]any{"retryAfter": secs})
	},
	uploads.OutcomeWrongPartSize: func(_ *API, w http.ResponseWriter, _ *http.Request, err error) {
		var e *uploads.PartSizeError
		errors.As(err, &e)
		writeError(w, http.StatusBadRequest, "INVALID_PART_SIZE", map[string]any{
			"fileId": e.FileID, "partNumber": e.PartNumber, "expectedBytes": e.Expected, "receivedBytes": e.Size,
		})
	},
	uploads.OutcomeIncomplete: func(_ *API, w http.ResponseWriter, _ *http.Request, err error) {
		var e *uploads.IncompleteError
		errors.As(err, &e)
		// Bounded: the first part numbers of each file, with each file's count.
		listed, counts, truncated := session.TruncateMissing(e.Missing, session.MaxMissingPerFile)
		writeError(w, http.StatusBadRequest, "INCOMPLETE_UPLOAD", map[string]any{
			"missingParts": listed, "missingPartCounts": counts, "truncated": truncated,
		})
	},
	uploads.OutcomeChecksumMismatch: func(_ *API, w http.ResponseWriter, _ *http.Request, err error) {
		var e *uploads.ChecksumMismatchError
		errors.As(err, &e)
		resend := "changed-parts"
		if e.ResendAll {
			resend = "all-parts"
		}
		writeError(w, http.StatusBadRequest, "CHECKSUM_MISMATCH", map[string]any{
			"fileId": e.FileID, "algorithm": e.Algorithm, "expected": e.Expected, "actual": e.Actual, "resend": resend,
		})
	},
	uploads.OutcomeSlugConflict: func(a *API, w http.ResponseWriter, _ *http.Request, err error) {
		var e *uploads.SlugConflictError
		errors.As(err, &e)
		writeError(w, http.StatusConflict, "SLUG_CONFLICT", map[string]any{
			"slug": e.Slug, "suggestedSlug": e.Suggested, "retryStrategy": a.SlugStrategy,
		})
	},
	uploads.OutcomeS3Unavailable: func(_ *API, w http.ResponseWriter, _ *http.Request, _ error) {
		setRetryAfter(w, s3RetryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "S3_UNAVAILABLE", map[string]any{"retryable": true})
	},
	uploads.OutcomeNotActive: func(_ *API, w http.ResponseWriter, _ *http.Request, err error) {
		var e *uploads.NotActiveError
		errors.As(err, &e)
		writeError(w, http.StatusConflict, "SESSION_NOT_ACTIVE", map[string]any{"status": e.Status})
	},
	uploads.OutcomeUploadLost: func(_ *API, w http.ResponseWriter, _ *http.Request, err error) {
		var e *uploads.UploadLostError
		errors.As(err, &e)
		writeError(w, http.StatusConflict, "UPLOAD_LOST", map[string]any{"fileId": e.FileID})
	},
	uploads.OutcomeInternal: func(a *API, w http.ResponseWriter, r *http.Request, err error) { a.internal(w, r, err) },
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

// getMOC: GET /api/mocs/uploads/mocs/{mocId}, the MOC as finalize answered it
// (with the verified checksums), for its owner (or an admin); anything else
// is 404. It counts against GET_RATE_LIMIT like a session's GET.
func (a *API) getMOC(w http.ResponseWriter, r *http.Request, u auth.User) {
	if a.GetLimiter != nil {
		if ok, wait := a.GetLimiter.Allow(u.Name); !ok {
			metrics.RateLimitRefusals.Inc()
			tooMany(w, retryAfterSeconds(wait), a.GetLimiter.Limit, a.GetLimitWindow)
			return
		}
	}
	id, err := uuid.Parse(r.PathValue("mocId"))
	if err != nil {
		writeError(w, http.StatusNotFound, "MOC_NOT_FOUND", nil)
		return
	}
	m, err := a.Uploads.DB.MOCByID(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !u.CanAccess(m.UserID)) {
		writeError(w, http.StatusNotFound, "MOC_NOT_FOUND", nil)
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := mocJSON(m)
	out["sessionId"] = m.UploadSessionID.String()
	writeJSON(w, http.StatusOK, out)
}
