package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// partURLBody is what a direct session's client may declare about the part
// it is about to send: checksums (base64, as S3 takes them) that are signed
// into the URL, so S3 refuses bytes that do not match.
type partURLBody struct {
	ContentMD5        string `json:"contentMD5"`
	ChecksumCRC32     string `json:"checksumCRC32"`
	ChecksumCRC32C    string `json:"checksumCRC32C"`
	ChecksumCRC64NVME string `json:"checksumCRC64NVME"`
	ChecksumSHA1      string `json:"checksumSHA1"`
	ChecksumSHA256    string `json:"checksumSHA256"`
}

// partURL: POST .../files/{fileId}/parts/{partNumber}/url, for direct
// sessions: a presigned S3 UploadPart of that part, after the same checks as a
// part PUT. The body is optional.
func (a *API) partURL(w http.ResponseWriter, r *http.Request, u auth.User) {
	if !a.mayUpload(u) {
		writeError(w, http.StatusForbidden, "FORBIDDEN", nil)
		return
	}
	sess, file, n, ok := a.partTarget(w, r, u, store.TransferDirect)
	if !ok {
		return
	}
	var body partURLBody
	if r.ContentLength != 0 && !a.readJSON(w, r, &body) {
		return
	}
	cs := objectstore.Checksums{ContentMD5: body.ContentMD5, CRC32: body.ChecksumCRC32, CRC32C: body.ChecksumCRC32C,
		CRC64NVME: body.ChecksumCRC64NVME, SHA1: body.ChecksumSHA1, SHA256: body.ChecksumSHA256}
	details := checksumErrors(body)
	if file.Declared() {
		// The file's upload is checked as a whole (a declared checksum): S3
		// takes a CRC64NVME for each part (or computes it), nothing else.
		for _, c := range []struct{ field, value string }{
			{"checksumCRC32", body.ChecksumCRC32}, {"checksumCRC32C", body.ChecksumCRC32C},
			{"checksumSHA1", body.ChecksumSHA1}, {"checksumSHA256", body.ChecksumSHA256},
		} {
			if c.value != "" {
				details = append(details, session.FieldError{Field: c.field,
					Message: "this file's upload is checked as a whole (it declared a checksum): send checksumCRC64NVME, or no part checksum"})
			}
		}
	} else if body.ChecksumSHA256 == "" && !a.Uploads.S3.PresignSecure() {
		// The URL is plain http: the body travels unprotected and a CRC
		// signed into the URL is no defence (bytes that give any CRC are easy
		// to make). Only a SHA-256 S3 checks keeps the part what the client sent.
		details = append(details, session.FieldError{Field: "checksumSHA256",
			Message: "is required: part URLs point at plain http:// S3 (S3_PRESIGN_ENDPOINT), where only a declared SHA-256 keeps a part from being changed on the way"})
	}
	if len(details) > 0 {
		validationError(w, details)
		return
	}
	url, err := a.Uploads.PartURL(r.Context(), sess, file, n, cs)
	switch {
	case err == nil:
	case isS3(err):
		logr.FromContextOrDiscard(r.Context()).Error(err, "presign part upload")
		setRetryAfter(w, s3RetryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "S3_UNAVAILABLE", map[string]any{"retryable": true})
		return
	case errors.Is(err, uploads.ErrExpired):
		writeError(w, http.StatusGone, "SESSION_EXPIRED", nil)
		return
	default:
		a.internal(w, r, err)
		return
	}
	// The URL's issue is the only sign of a direct part the operator gets:
	// it prompts the resource's progress to be read from S3 again.
	if a.Notify != nil && sess.Namespace != "" {
		a.Notify(sess.Namespace, sess.Name, w.Header().Get(CorrelationHeader))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"url": url.URL, "method": url.Method, "headers": url.Headers,
		"expiresAt": url.ExpiresAt.UTC().Format(time.RFC3339),
	})
}

// checksumErrors checks that each declared checksum is base64 of its
// algorithm's length: a malformed one would be signed into a URL no upload
// could ever match.
func checksumErrors(b partURLBody) []session.FieldError {
	var out []session.FieldError
	for _, c := range []struct {
		field, value string
		size         int
	}{
		{"contentMD5", b.ContentMD5, 16}, {"checksumCRC32", b.ChecksumCRC32, 4}, {"checksumCRC32C", b.ChecksumCRC32C, 4},
		{"checksumCRC64NVME", b.ChecksumCRC64NVME, 8}, {"checksumSHA1", b.ChecksumSHA1, 20}, {"checksumSHA256", b.ChecksumSHA256, 32},
	} {
		if c.value == "" {
			continue
		}
		if raw, err := base64.StdEncoding.DecodeString(c.value); err != nil || len(raw) != c.size {
			out = append(out, session.FieldError{Field: c.field, Message: fmt.Sprintf("must be the base64 of %d bytes", c.size)})
		}
	}
	return out
}
