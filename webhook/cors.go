package webhook

import (
	"net/http"
	"slices"
	"strings"
)

// CORS for browser uploads of parts. Written out rather
// than taken from github.com/rs/cors, which echoes only the requested method
// and headers in a preflight; the contract wants the full lists every time,
// and never "*".
type CORS struct {
	Enabled bool
	Origins []string
}

// AllowedHeaders are the request headers a browser may send with a part.
var AllowedHeaders = []string{
	"Content-Type", "Authorization", "Content-MD5", "X-Correlation-ID", "X-Request-ID",
	"x-amz-checksum-crc32", "x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme", "x-amz-checksum-sha1", "x-amz-checksum-sha256",
}

func (c CORS) allowed(origin string) bool {
	return c.Enabled && origin != "" && slices.Contains(c.Origins, origin)
}

// preflight answers OPTIONS on a part path: 204 with the full lists for an
// allowed origin; 403 with no Access-Control-Allow-* header otherwise.
func (c CORS) preflight(w http.ResponseWriter, r *http.Request) {
	c.preflightFor("PUT, OPTIONS")(w, r)
}

// preflightFor answers OPTIONS on a path whose calls use methods.
func (c CORS) preflightFor(methods string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { c.answerPreflight(w, r, methods) }
}

func (c CORS) answerPreflight(w http.ResponseWriter, r *http.Request, methods string) {
	w.Header().Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if !c.allowed(origin) {
		writeError(w, http.StatusForbidden, "CORS_ORIGIN_NOT_ALLOWED", nil)
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", methods)
	h.Set("Access-Control-Allow-Headers", strings.Join(AllowedHeaders, ", "))
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// actual decorates the response to a part PUT from an allowed origin so the
// page can read its status, body, ETag and correlation id (errors included).
func (c CORS) actual(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			w.Header().Add("Vary", "Origin")
			if c.allowed(origin) {
				w.Header().Set("Access-Control-Allow-Origin", origin)
				w.Header().Set("Access-Control-Expose-Headers", "ETag, X-Correlation-ID")
			}
		}
		next(w, r)
	}
}
