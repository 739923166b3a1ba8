// Package metrics defines the operator's Prometheus metrics (prefix
// mocupload_), registered on controller-runtime's registry so they are served
// by the manager's metrics endpoint. Names follow Prometheus's conventions
// (base units as the suffix, before _total on counters). The alerts in
// config/prometheus and the dashboard in config/grafana query them by name:
// alerts_test.go fails when a rename leaves them behind.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/mocs-dev/upload-operator/internal/partbuf"
)

var (
	// PartsReceived counts parts stored in S3 and recorded.
	PartsReceived = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_parts_received_total", Help: "Parts stored in S3 and recorded."})
	// PartBytes counts the bytes of those parts.
	PartBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_part_received_bytes_total", Help: "Bytes of the parts stored."})
	// PartDuration is the time from a part request's headers to its answer, by outcome.
	PartDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mocupload_part_duration_seconds", Help: "Part upload duration, from the request's headers to the answer.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25}}, []string{"result"})
	// S3Retries counts failed S3 attempts that the SDK retried, by operation.
	S3Retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mocupload_s3_retries_total", Help: "Failed S3 attempts the SDK retried."}, []string{"operation"})
	// S3Exhaustions counts S3 calls that failed after every attempt.
	S3Exhaustions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mocupload_s3_exhaustions_total", Help: "S3 calls that failed after every attempt."}, []string{"operation"})
	// Finalizes counts finalize outcomes.
	Finalizes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mocupload_finalize_total", Help: "Finalize outcomes (created, replayed, in_progress, incomplete, checksum_mismatch, slug_conflict, s3_unavailable, expired, not_found, error)."},
		[]string{"result"})
	// StaleLockRecoveries counts finalize locks taken over after going stale.
	StaleLockRecoveries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_stale_lock_recoveries_total", Help: "Stale finalize locks taken over."})
	// RateLimitRefusals counts finalize requests refused by the rate limit.
	RateLimitRefusals = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_ratelimit_refusals_total", Help: "Finalize requests refused with 429."})
	// RateLimitFailOpens counts finalize requests allowed because Redis was unreachable.
	RateLimitFailOpens = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_ratelimit_fail_open_total", Help: "Finalize requests allowed because Redis was unreachable."})
	// RateLimitLocal counts requests decided by a replica's own in-memory
	// limit because Redis could not be asked (or its pool was exhausted).
	RateLimitLocal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mocupload_ratelimit_local_decisions_total", Help: "Rate-limit decisions made by the replica's own in-memory log because Redis could not be asked, by limit."},
		[]string{"limit"})
	// PartsRefused counts part requests refused for fairness, by reason
	// (in_flight: the user's parts in flight; too_slow: a body below
	// MIN_PART_RATE; buffer_share: the user's share of the buffers;
	// buffers: no memory or spill room).
	PartsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mocupload_parts_refused_total", Help: "Part requests refused for fairness, by reason (in_flight, too_slow, buffer_share, buffers)."},
		[]string{"reason"})
	// IdleConnectionsClosed counts keep-alive connections closed because too
	// many waited for a request (MAX_IDLE_CONNECTIONS).
	IdleConnectionsClosed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_http_idle_connections_closed_total", Help: "Idle keep-alive connections closed past MAX_IDLE_CONNECTIONS, longest idle first."})
	// RequestsInFlight is the number of upload API requests being served.
	RequestsInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mocupload_http_requests_in_flight", Help: "Upload API requests being served."})
	// AuthRejections counts refused bearer tokens by reason (malformed: not a
	// JWT, refused without a review; rejected: the API server said no) and by
	// source address (the first MaxAuthSources seen; "other" after that, so a
	// flood from many addresses cannot grow the series without bound).
	AuthRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mocupload_auth_rejections_total", Help: "Bearer tokens refused, by reason and source address."},
		[]string{"reason", "source"})
	// OrphanedUploadsAborted counts multipart uploads the orphan sweep aborted.
	OrphanedUploadsAborted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_orphaned_uploads_aborted_total", Help: "Multipart uploads no session could use any more, aborted by the orphan sweep."})
	// OrphanedObjectsDeleted counts objects the orphan sweep deleted.
	OrphanedObjectsDeleted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_orphaned_objects_deleted_total", Help: "Objects under sessions/ of no session that may use them (deleted, failed, expired), deleted by the orphan sweep."})
	// RemovalsFinished counts removals of failed or expired sessions finished by the leader's sweep.
	RemovalsFinished = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_pending_removals_finished_total", Help: "Removals from S3 of failed or expired sessions that were cut off and finished by the orphan sweep."})
	// ResourcelessSessionsRemoved counts sessions removed because their resource was gone without its finalizer having run.
	ResourcelessSessionsRemoved = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_resourceless_sessions_removed_total", Help: "Sessions removed (uploads aborted, objects and rows deleted) because their resource was deleted without its finalizer having run."})
	// KeptSessionsTrimmed counts finished API-created resources deleted early because their owner kept more than KEPT_SESSIONS_PER_USER.
	KeptSessionsTrimmed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mocupload_kept_sessions_trimmed_total", Help: "Finished sessions created over HTTP deleted before their retention because their owner kept more than KEPT_SESSIONS_PER_USER."})
	// SessionsByPhase is the number of UploadSessions per phase, as the reconciler last saw them.
	SessionsByPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mocupload_sessions", Help: "UploadSessions by phase (reconciler's cache)."}, []string{"phase"})
)

func init() {
	crmetrics.Registry.MustRegister(PartsReceived, PartBytes, PartDuration, S3Retries, S3Exhaustions, Finalizes,
		StaleLockRecoveries, RateLimitRefusals, RateLimitFailOpens, RateLimitLocal, PartsRefused, SessionsByPhase, RequestsInFlight, IdleConnectionsClosed, AuthRejections,
		OrphanedUploadsAborted, OrphanedObjectsDeleted, RemovalsFinished, ResourcelessSessionsRemoved, KeptSessionsTrimmed)
}

// MaxAuthSources bounds the source addresses AuthRejections names.
const MaxAuthSources = 256

var (
	authSourcesMu sync.Mutex
	authSources   = map[string]bool{}
)

// AuthRejected counts a refused token from source (a client address).
func AuthRejected(reason, source string) {
	authSourcesMu.Lock()
	if !authSources[source] {
		if len(authSources) < MaxAuthSources {
			authSources[source] = true
		} else {
			source = "other"
		}
	}
	authSourcesMu.Unlock()
	AuthRejections.WithLabelValues(reason, source).Inc()
}

// RegisterPartBuffers exports the part buffer pool's counters, read at each
// scrape.
func RegisterPartBuffers(pool *partbuf.Pool) {
	crmetrics.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mocupload_part_buffer_spills_total",
			Help: "Parts spilled to disk because the memory budget was taken."},
			func() float64 { return float64(pool.Stats().Spilled) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mocupload_part_buffer_waits_total",
			Help: "Parts that waited for memory held by other parts."},
			func() float64 { return float64(pool.Stats().Waited) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mocupload_part_buffer_in_use_bytes",
			Help: "Memory held by parts in flight, within PART_BUFFER_BUDGET_BYTES."},
			func() float64 { return float64(pool.Stats().InUseBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mocupload_part_buffer_spilled_in_use_bytes",
			Help: "Disk held by spilled parts in flight, within SPILL_BUDGET_BYTES."},
			func() float64 { return float64(pool.Stats().SpilledBytes) }),
	)
}

// S3Observer feeds S3 attempt outcomes into the counters.
type S3Observer struct{}

// S3AttemptFailed implements objectstore.Observer.
func (S3Observer) S3AttemptFailed(op string, attempt int, willRetry bool) {
	if willRetry {
		S3Retries.WithLabelValues(op).Inc()
	} else {
		S3Exhaustions.WithLabelValues(op).Inc()
	}
}
