package webhook

import (
	"encoding/json"
	"net/http"
	"regexp"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
)

// CorrelationHeader is echoed on every response and logged on every line of a request.
const CorrelationHeader = "X-Correlation-ID"

// API is the upload API's handler set.
type API struct {
	Log logr.Logger
}

// Handler returns the routed, instrumented handler.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", nil)
	})
	return a.withCorrelation(mux)
}

var safeID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// withCorrelation takes the caller's X-Correlation-ID (or X-Request-ID) when it
// is a sane token, else generates one, and echoes it on the response.
func (a *API) withCorrelation(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(CorrelationHeader)
		if id == "" {
			id = r.Header.Get("X-Request-ID")
		}
		if !safeID.MatchString(id) {
			id = uuid.NewString()
		}
		w.Header().Set(CorrelationHeader, id)
		log := a.Log.WithValues("correlationId", id)
		next.ServeHTTP(w, r.WithContext(logr.NewContext(r.Context(), log)))
	})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// writeError writes {"error": code, ...extra}.
func writeError(w http.ResponseWriter, status int, code string, extra map[string]any) {
	body := map[string]any{"error": code}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, status, body)
}
