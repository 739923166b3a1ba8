package webhook

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/logging"
	"github.com/mocs-dev/upload-operator/internal/metrics"
	"github.com/mocs-dev/upload-operator/internal/ratelimit"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// CorrelationHeader is echoed on every response and logged on every line of a request.
const CorrelationHeader = "X-Correlation-ID"

// API is the upload API's handler set.
type API struct {
	Log              logr.Logger
	Auth             *auth.Authenticator
	Uploads          *uploads.Service
	Kube             client.Client
	SessionNamespace string
	// KubeReader reads resources from the API server itself, not the cache
	// (nil: Kube), where a create must know whether its resource was deleted.
	KubeReader  client.Reader
	PartTimeout time.Duration
	// FinalizeTimeout bounds a finalize started over HTTP (default 5m). It
	// runs detached from the request, so a client that gives up does not
	// cancel it half way.
	FinalizeTimeout time.Duration
	// Notify pokes a session's custom resource so the reconciler refreshes its
	// status (progress, finalize); nil in tests that do not need it.
	Notify func(namespace, name, correlationID string)
	// Limiter rate-limits finalize per user (admins exempt); nil: no limit.
	Limiter     RateLimiter
	LimitCount  int
	LimitWindow string
	// CreateLimiter rate-limits session creation per user (admins exempt);
	// nil: no limit.
	CreateLimiter     RateLimiter
	CreateLimitCount  int
	CreateLimitWindow string
	// GetLimiter limits session GETs per user on this replica
	// (GET_RATE_LIMIT); nil: no limit. GetLimitWindow is its window as
	// answered.
	GetLimiter     *ratelimit.Local
	GetLimitWindow string
	// TenantCreateLimiter rate-limits session creation per tenant (a
	// namespace's ServiceAccounts together; admins exempt): 50
	// ServiceAccounts get one tenant's creations, not 50 users'. nil: no limit.
	TenantCreateLimiter     RateLimiter
	TenantCreateLimitCount  int
	TenantCreateLimitWindow string
	// MaxActiveSessions caps a user's sessions not finalized, expired or
	// failed (admins exempt); 0: no cap.
	MaxActiveSessions int
	// UploadGroups, when set, are the only groups (besides admins) whose
	// members may create sessions.
	UploadGroups []string
	// PartsInFlight bounds each user's part requests at once
	// (MAX_PARTS_IN_FLIGHT_PER_USER); nil: no bound.
	PartsInFlight *InFlight
	// MinPartRate (bytes/s) is the slowest a part body may arrive once
	// MinPartRateGrace has passed; 0: no minimum.
	MinPartRate      int64
	MinPartRateGrace time.Duration
	// SlugStrategy is SLUG_CONFLICT_STRATEGY, returned as retryStrategy.
	SlugStrategy string
	// CORS for browser uploads of parts.
	CORS CORS
	// MaxJSONBody bounds JSON request bodies (MAX_JSON_BODY_BYTES; 0: the
	// default); JSONBodyTimeout bounds the time to send one.
	MaxJSONBody     int64
	JSONBodyTimeout time.Duration
	// ResponseWriteTimeout bounds writing one answer (0: the default, 10 s).
	ResponseWriteTimeout time.Duration
}

// Handler returns the routed, instrumented handler.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /api/mocs/uploads/sessions", a.authed(a.createSession))
	mux.HandleFunc("GET /api/mocs/uploads/sessions/{sessionId}", a.authed(a.getSession))
	mux.HandleFunc("PUT /api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/{partNumber}", a.CORS.actual(a.authed(a.putPart)))
	mux.HandleFunc("OPTIONS /api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/{partNumber}", a.CORS.preflight)
	mux.HandleFunc("POST /api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/{partNumber}/url", a.CORS.actual(a.authed(a.partURL)))
	mux.HandleFunc("OPTIONS /api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/{partNumber}/url", a.CORS.preflightFor("POST, OPTIONS"))
	mux.HandleFunc("POST /api/mocs/uploads/finalize", a.authed(a.finalize))
	mux.HandleFunc("GET /api/mocs/uploads/mocs/{mocId}", a.authed(a.getMOC))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", nil)
	})
	return a.withCorrelation(mux)
}

type ctxKey int

const arrivalKey ctxKey = iota

// withCorrelation takes the caller's X-Correlation-ID (or X-Request-ID) when it
// is a sane token, else generates one, echoes it on the response and puts it
// on every log line of the request. It also notes when the headers arrived:
// part timeouts count from there.
func (a *API) withCorrelation(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrival := time.Now()
		id := r.Header.Get(CorrelationHeader)
		if id == "" {
			id = r.Header.Get("X-Request-ID")
		}
		if !logging.ValidCorrelationID(id) {
			id = uuid.NewString()
		}
		w.Header().Set(CorrelationHeader, id)
		log := a.Log.WithValues("correlationId", id)
		ctx := context.WithValue(logr.NewContext(r.Context(), log), arrivalKey, arrival)
		next.ServeHTTP(&answerDeadline{ResponseWriter: w, timeout: cmp.Or(a.ResponseWriteTimeout, DefaultResponseWriteTimeout)}, r.WithContext(ctx))
	})
}

// DefaultResponseWriteTimeout bounds writing an answer once the handler starts to:
// a client that stops reading (a GET of a large session, read at a byte a
// second) gives its connection and goroutine back then, not never. It starts
// at the answer, not the request, so a long part upload or finalize is not
// cut by it.
const DefaultResponseWriteTimeout = 10 * time.Second

// answerDeadline sets the connection's write deadline when the answer starts.
type answerDeadline struct {
	http.ResponseWriter
	timeout time.Duration
	started bool
}

func (d *answerDeadline) start() {
	if !d.started {
		d.started = true
		_ = http.NewResponseController(d.ResponseWriter).SetWriteDeadline(time.Now().Add(d.timeout))
	}
}

func (d *answerDeadline) WriteHeader(code int) { d.start(); d.ResponseWriter.WriteHeader(code) }

func (d *answerDeadline) Write(b []byte) (int, error) { d.start(); return d.ResponseWriter.Write(b) }

// Unwrap lets http.ResponseController reach the connection's own writer.
func (d *answerDeadline) Unwrap() http.ResponseWriter { return d.ResponseWriter }

func arrivalOf(ctx context.Context) time.Time {
	t, _ := ctx.Value(arrivalKey).(time.Time)
	return t
}

func (a *API) finalizeTimeout() time.Duration {
	if a.FinalizeTimeout > 0 {
		return a.FinalizeTimeout
	}
	return DefaultFinalizeTimeout
}

// DefaultFinalizeTimeout bounds a finalize started over HTTP.
const DefaultFinalizeTimeout = 5 * time.Minute

func (a *API) reader() client.Reader {
	if a.KubeReader != nil {
		return a.KubeReader
	}
	return a.Kube
}

// sourceOf is the client's address without its port.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type authedHandler func(w http.ResponseWriter, r *http.Request, u auth.User)

// authed checks the bearer token (401 UNAUTHENTICATED) before the handler.
func (a *API) authed(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			token, ok = strings.CutPrefix(r.Header.Get("Authorization"), "bearer ")
		}
		if !ok || strings.TrimSpace(token) == "" {
			writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", nil)
			return
		}
		u, err := a.Auth.AuthenticateFrom(r.Context(), strings.TrimSpace(token), sourceOf(r))
		var limited *auth.FailureLimitError
		if errors.As(err, &limited) {
			// The address failed too often: refused before any TokenReview,
			// so a flood of made-up tokens costs the API server nothing.
			metrics.AuthRejected(auth.Reason(err), sourceOf(r))
			tooMany(w, retryAfterSeconds(limited.RetryAfter), limited.Limit, "auth-failures")
			return
		}
		if errors.Is(err, auth.ErrUnauthenticated) {
			metrics.AuthRejected(auth.Reason(err), sourceOf(r))
			writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", nil)
			return
		}
		if err != nil {
			logr.FromContextOrDiscard(r.Context()).Error(err, "token review failed")
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "AUTH_UNAVAILABLE", map[string]any{"retryable": true})
			return
		}
		ctx := logr.NewContext(r.Context(), logr.FromContextOrDiscard(r.Context()).WithValues("user", u.Name))
		h(w, r.WithContext(ctx), u)
	}
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

// retryAfterSeconds rounds up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// s3RetryAfterSeconds is the Retry-After of S3_UNAVAILABLE: the server has
// already spent its own 3 attempts; a client's backoff (1 s, 2 s, 4 s) covers
// the rest of a short outage.
const s3RetryAfterSeconds = 2

func setRetryAfter(w http.ResponseWriter, seconds int) {
	w.Header().Set("Retry-After", fmt.Sprint(seconds))
}
