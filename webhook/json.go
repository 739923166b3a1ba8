package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/mocs-dev/upload-operator/internal/session"
)

// Defaults of the limits on JSON request bodies.
const (
	// DefaultMaxJSONBody is far above what a real request needs (a session of
	// 100 files is about 10 KiB) and far below what could hurt a replica.
	DefaultMaxJSONBody = 64 << 10
	// DefaultJSONBodyTimeout is how long a client may take to send a JSON
	// body once its headers are in: a body that trickles is cut off.
	DefaultJSONBodyTimeout = 10 * time.Second
	// maxDetails bounds the problems listed in one VALIDATION_ERROR.
	maxDetails = 20
)

// readJSON reads a JSON body into v within the size and time limits. On any
// problem it writes the answer itself (413 PAYLOAD_TOO_LARGE, or 400
// VALIDATION_ERROR with details, wrong types included) and returns false.
func (a *API) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	limit := a.MaxJSONBody
	if limit <= 0 {
		limit = DefaultMaxJSONBody
	}
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", map[string]any{"maxBytes": limit})
		return false
	}
	timeout := a.JSONBodyTimeout
	if timeout <= 0 {
		timeout = DefaultJSONBodyTimeout
	}
	_ = http.NewResponseController(w).SetReadDeadline(arrivalOf(r.Context()).Add(timeout))
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	err := dec.Decode(v)
	var (
		tooLarge  *http.MaxBytesError
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
		details   []session.FieldError
	)
	switch {
	case err == nil && dec.More():
		details = []session.FieldError{{Field: "body", Message: "must be a single JSON object"}}
	case err == nil:
		return true
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", map[string]any{"maxBytes": limit})
		return false
	case isTimeout(err):
		writeError(w, http.StatusRequestTimeout, "REQUEST_TIMEOUT", map[string]any{
			"elapsedMs": time.Since(arrivalOf(r.Context())).Milliseconds()})
		return false
	case errors.Is(err, io.EOF):
		details = []session.FieldError{{Field: "body", Message: "is required"}}
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		details = []session.FieldError{{Field: field, Message: fmt.Sprintf("must be %s, not %s", jsonType(typeErr.Type.Kind().String()), typeErr.Value)}}
	case errors.As(err, &syntaxErr):
		details = []session.FieldError{{Field: "body", Message: fmt.Sprintf("invalid JSON at offset %d", syntaxErr.Offset)}}
	default:
		details = []session.FieldError{{Field: "body", Message: "invalid JSON"}}
	}
	validationError(w, details)
	return false
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func jsonType(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "slice":
		return "an array"
	case kind == "struct", kind == "map", kind == "ptr":
		return "an object"
	case kind == "bool":
		return "a boolean"
	}
	return kind
}

// validationError answers 400 VALIDATION_ERROR with at most maxDetails
// problems; the rest are counted in one last entry.
func validationError(w http.ResponseWriter, details []session.FieldError) {
	if len(details) > maxDetails {
		more := len(details) - (maxDetails - 1)
		details = append(details[:maxDetails-1:maxDetails-1],
			session.FieldError{Field: "…", Message: fmt.Sprintf("and %d more problems", more)})
	}
	writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", map[string]any{"details": details})
}
