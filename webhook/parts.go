package webhook

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/metrics"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// partTarget runs the checks a part PUT and a part URL request share, in
// the contract's order: auth (done), part number syntax, session and file,
// session state, part number against the file, transfer mode. It answers
// the request itself when a check fails.
func (a *API) partTarget(w http.ResponseWriter, r *http.Request, u auth.User, transfer string) (store.Session, store.File, int, bool) {
	ctx := r.Context()
	n, ok := session.ParsePartNumber(r.PathValue("partNumber"))
	if !ok {
		writeError(w, http.StatusBadRequest, "INVALID_PART_NUMBER", map[string]any{"validRange": []int{1, session.MaxParts}})
		return store.Session{}, store.File{}, 0, false
	}
	sess, ok := a.ownedSession(w, r, u, r.PathValue("sessionId"))
	if !ok {
		return store.Session{}, store.File{}, 0, false
	}
	fileID, err := uuid.Parse(r.PathValue("fileId"))
	if err != nil {
		writeError(w, http.StatusNotFound, "FILE_NOT_FOUND", nil)
		return store.Session{}, store.File{}, 0, false
	}
	file, err := a.Uploads.File(ctx, sess.ID, fileID)
	if errors.Is(err, uploads.ErrFileNotFound) {
		writeError(w, http.StatusNotFound, "FILE_NOT_FOUND", nil)
		return store.Session{}, store.File{}, 0, false
	}
	if err != nil {
		a.internal(w, r, err)
		return store.Session{}, store.File{}, 0, false
	}
	if err := a.Uploads.CheckAcceptsParts(sess, file); err != nil {
		if errors.Is(err, uploads.ErrExpired) {
			writeError(w, http.StatusGone, "SESSION_EXPIRED", nil)
			return store.Session{}, store.File{}, 0, false
		}
		writeError(w, http.StatusConflict, "SESSION_NOT_ACTIVE", map[string]any{"status": sess.Status})
		return store.Session{}, store.File{}, 0, false
	}
	if n > file.PartCount {
		writeError(w, http.StatusBadRequest, "INVALID_PART_NUMBER", map[string]any{"validRange": []int{1, file.PartCount}})
		return store.Session{}, store.File{}, 0, false
	}
	if uploads.CheckTransfer(sess, transfer) != nil {
		writeError(w, http.StatusConflict, "WRONG_TRANSFER_MODE", map[string]any{"transfer": sess.Transfer})
		return store.Session{}, store.File{}, 0, false
	}
	return sess, file, n, true
}

// putPart: PUT .../files/{fileId}/parts/{partNumber}, for proxied sessions.
// After the shared checks: length, then the body.
func (a *API) putPart(w http.ResponseWriter, r *http.Request, u auth.User) {
	ctx := r.Context()
	if !a.mayUpload(u) {
		writeError(w, http.StatusForbidden, "FORBIDDEN", nil)
		return
	}
	if a.PartsInFlight != nil {
		// Before anything is looked up or read: a caller over its share
		// costs the replica nothing but this answer.
		if !a.PartsInFlight.Acquire(u.Name) {
			metrics.PartsRefused.WithLabelValues("in_flight").Inc()
			w.Header().Set("Connection", "close")
			tooMany(w, 1, a.PartsInFlight.Limit, "in-flight")
			return
		}
		defer a.PartsInFlight.Release(u.Name)
	}
	sess, file, n, ok := a.partTarget(w, r, u, store.TransferProxy)
	if !ok {
		return
	}
	if r.ContentLength < 0 {
		writeError(w, http.StatusLengthRequired, "LENGTH_REQUIRED", nil)
		return
	}
	want := uploads.ExpectedPartSize(sess, file, n)
	if r.ContentLength != want {
		writeError(w, http.StatusBadRequest, "INVALID_PART_SIZE", map[string]any{"expectedBytes": want, "receivedBytes": r.ContentLength})
		return
	}

	// The part must be received and stored within UPLOAD_PART_TIMEOUT of the
	// headers' arrival: the body read and every S3 attempt share that deadline.
	arrival := arrivalOf(ctx)
	timeoutAt := arrival.Add(a.PartTimeout)
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(timeoutAt)
	pctx, cancel := context.WithDeadline(ctx, timeoutAt)
	defer cancel()
	var body io.Reader = r.Body
	var paced *minRateBody
	if a.MinPartRate > 0 {
		paced = &minRateBody{ReadCloser: r.Body, rc: rc, rate: a.MinPartRate, grace: a.MinPartRateGrace,
			hardDeadline: timeoutAt, now: time.Now}
		body = paced
	}
	part, err := a.Uploads.StorePart(pctx, uploads.PartUpload{
		Session: sess, File: file, PartNumber: n, Body: body, Size: r.ContentLength, Checksums: checksumsOf(r),
	})
	if err != nil && paced != nil && paced.TooSlow() {
		// Cut for falling below MIN_PART_RATE: nothing of it was kept, and
		// its buffer is free again.
		metrics.PartsRefused.WithLabelValues("too_slow").Inc()
		metrics.PartDuration.WithLabelValues("error").Observe(time.Since(arrival).Seconds())
		w.Header().Set("Connection", "close")
		// timeoutAt is the deadline the body missed: when it fell behind.
		now := time.Now()
		writeError(w, http.StatusRequestTimeout, "REQUEST_TIMEOUT", map[string]any{
			"elapsedMs": now.Sub(arrival).Milliseconds(), "timeoutAt": now.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			"receivedBytes": paced.got, "minBytesPerSecond": a.MinPartRate,
		})
		return
	}
	if err != nil {
		a.partFailed(w, r, err, arrival, timeoutAt)
		metrics.PartDuration.WithLabelValues("error").Observe(time.Since(arrival).Seconds())
		return
	}
	metrics.PartsReceived.Inc()
	metrics.PartBytes.Add(float64(part.SizeBytes))
	metrics.PartDuration.WithLabelValues("ok").Observe(time.Since(arrival).Seconds())
	if a.Notify != nil && sess.Namespace != "" {
		a.Notify(sess.Namespace, sess.Name, w.Header().Get(CorrelationHeader))
	}
	w.Header().Set("ETag", part.ETag)
	writeJSON(w, http.StatusOK, map[string]any{"partNumber": part.PartNumber, "etag": part.ETag, "sizeBytes": part.SizeBytes})
}

func checksumsOf(r *http.Request) objectstore.Checksums {
	h := r.Header
	return objectstore.Checksums{
		ContentMD5: h.Get("Content-MD5"), CRC32: h.Get("x-amz-checksum-crc32"), CRC32C: h.Get("x-amz-checksum-crc32c"),
		CRC64NVME: h.Get("x-amz-checksum-crc64nvme"), SHA1: h.Get("x-amz-checksum-sha1"), SHA256: h.Get("x-amz-checksum-sha256"),
	}
}

// partFailed maps a failed part to its answer. Past the deadline the timeout
// wins over whatever else happened (S3 retries included); before it, an S3
// that could not be reached (connections dropped or refused, every attempt
// spent) is 503, however its errors describe themselves.
func (a *API) partFailed(w http.ResponseWriter, r *http.Request, err error, arrival, timeoutAt time.Time) {
	log := logr.FromContextOrDiscard(r.Context())
	now := time.Now()
	if !now.Before(timeoutAt) {
		log.Error(err, "part upload timed out", "elapsedMs", now.Sub(arrival).Milliseconds())
		writeError(w, http.StatusRequestTimeout, "REQUEST_TIMEOUT", map[string]any{
			"elapsedMs": now.Sub(arrival).Milliseconds(),
			"timeoutAt": timeoutAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		})
		return
	}
	var (
		pe        *uploads.PartError
		notActive *uploads.NotActiveError
		busy      *uploads.PartBusyError
		mismatch  *uploads.PartChecksumError
	)
	switch {
	case errors.As(err, &mismatch):
		// Checked by the operator as the bytes arrived; nothing was stored.
		writeError(w, http.StatusBadRequest, "CHECKSUM_MISMATCH", map[string]any{"header": mismatch.Header, "malformed": mismatch.Malformed})
		return
	case errors.As(err, &busy):
		// As many PUTs of this part are in flight as it has S3 part numbers
		// for: a client racing itself. Nothing was read or sent.
		w.Header().Set("Connection", "close")
		tooMany(w, retryAfterSeconds(busy.RetryAfter), busy.InFlight, "in-flight")
		return
	case errors.Is(err, uploads.ErrSessionNotFound):
		writeError(w, http.StatusNotFound, "SESSION_NOT_FOUND", nil)
		return
	case errors.Is(err, uploads.ErrExpired):
		writeError(w, http.StatusGone, "SESSION_EXPIRED", nil)
		return
	case errors.As(err, &notActive):
		writeError(w, http.StatusConflict, "SESSION_NOT_ACTIVE", map[string]any{"status": notActive.Status})
		return
	case errors.Is(err, partbuf.ErrOwnerShare):
		// This caller's parts already hold its share of memory and of the
		// spill budget: its own parts in flight must end first. The body was
		// not read, so the connection goes.
		metrics.PartsRefused.WithLabelValues("buffer_share").Inc()
		w.Header().Set("Connection", "close")
		tooMany(w, 1, int(a.Uploads.Buffers.OwnerShareBytes()), "buffers")
		return
	case errors.Is(err, partbuf.ErrSpillBudget):
		metrics.PartsRefused.WithLabelValues("buffers").Inc()
		// Memory and the spill budget are taken by parts in flight: a moment
		// later there is room. The body was not read, so the connection goes.
		w.Header().Set("Connection", "close")
		setRetryAfter(w, s3RetryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "SERVER_BUSY", map[string]any{"retryable": true})
		return
	case errors.As(err, &pe) && pe.Stage == uploads.StageRead:
		log.Error(err, "part body not received")
		writeError(w, http.StatusBadRequest, "INCOMPLETE_BODY", nil)
		return
	case errors.As(err, &pe) && pe.Stage == uploads.StageS3:
		switch {
		case objectstore.IsChecksumMismatch(err):
			writeError(w, http.StatusBadRequest, "CHECKSUM_MISMATCH", nil)
			return
		case objectstore.IsClientError(err):
			// What S3 said (it names the bucket, the key, the request) is for
			// the operator's log; the client gets the stable code.
			log.Error(err, "S3 refused the part")
			writeError(w, http.StatusBadRequest, "INVALID_PART", nil)
			return
		}
		log.Error(err, "S3 retries exhausted")
		setRetryAfter(w, s3RetryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "S3_UNAVAILABLE", map[string]any{"retryable": true})
		return
	}
	a.internal(w, r, err)
}
