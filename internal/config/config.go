// Package config reads the operator's configuration from the environment.
// Every variable has a documented default; a bad value is an
// error at start-up, never a silent fallback.
package config

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mocs-dev/upload-operator/internal/session"
)

// Config is the whole operator configuration.
type Config struct {
	DatabaseURL string
	RedisURL    string

	S3Endpoint string
	// S3PresignEndpoint is the S3 address direct sessions' presigned part
	// URLs point at, when clients reach S3 elsewhere than the operator does.
	S3PresignEndpoint string
	// PartURLTTL is how long a presigned part URL is valid (at most 15m).
	PartURLTTL        time.Duration
	S3Region          string
	S3Bucket          string
	S3AccessKeyID     string
	S3SecretAccessKey string
	S3UnsignedPayload bool
	S3CallTimeout     time.Duration
	S3DialTimeout     time.Duration

	DatabaseStatementTimeout time.Duration

	HTTPAddr         string
	TLSCertFile      string
	TLSKeyFile       string
	MetricsAddr      string
	MetricsSecure    bool
	MetricsCertDir   string
	ProbeAddr        string
	SessionNamespace string
	WatchNamespace   string
	LeaderElection   bool
	// LeaderElectionNamespace holds the Lease; empty in a cluster means the pod's namespace.
	LeaderElectionNamespace string
	LeaseDuration           time.Duration

	AdminGroups    []string
	AuthCacheTTL   time.Duration
	AuthRequireJWT bool
	// AuthAudiences are the audiences tokens are reviewed for; empty: the
	// API server's own (plain ServiceAccount tokens, for a migration).
	AuthAudiences []string

	UploadPartTimeout time.Duration
	FinalizeLimit     int
	FinalizeWindow    time.Duration
	CreateLimit       int
	CreateWindow      time.Duration
	MaxActiveSessions int
	UploadGroups      []string
	ExpiredRetention  time.Duration
	// OrphanSweepInterval is how often the leader aborts multipart uploads no
	// session can use; OrphanUploadMinAge is how old one must be first.
	OrphanSweepInterval time.Duration
	OrphanUploadMinAge  time.Duration
	StaleLockAfter      time.Duration
	SessionTTL          time.Duration
	SessionRetention    time.Duration
	ResyncInterval      time.Duration
	ReadHeaderTimeout   time.Duration
	ShutdownGrace       time.Duration
	FinalizeTimeout     time.Duration
	ReconcileTimeout    time.Duration

	AllowedContentTypes []string
	MaxFileSizeBytes    int64
	MaxFilesPerSession  int
	MaxPartSizeBytes    int64
	MaxJSONBodyBytes    int64
	JSONBodyTimeout     time.Duration
	PartBufferBudget    int64
	SpillBudget         int64
	SpillDir            string

	SlugConflictStrategy string
	RedisKeyPrefix       string

	AllowBrowserUploads  bool
	AllowedUploadOrigins []string

	LogLevel  string
	LogFormat string
}

// FromEnv reads the configuration from the process environment.
func FromEnv() (Config, error) { return Load(os.LookupEnv) }

// Load reads the configuration through lookup (os.LookupEnv in production, a
// map in tests).
func Load(lookup func(string) (string, bool)) (Config, error) {
	r := reader{lookup: lookup}
	c := Config{
		DatabaseURL:              r.str("DATABASE_URL", ""),
		RedisURL:                 r.str("REDIS_URL", ""),
		S3Endpoint:               r.str("S3_ENDPOINT", ""),
		S3PresignEndpoint:        r.str("S3_PRESIGN_ENDPOINT", ""),
		PartURLTTL:               r.duration("PART_URL_TTL", 15*time.Minute),
		S3Region:                 r.str("S3_REGION", "us-east-1"),
		S3Bucket:                 r.str("S3_BUCKET", ""),
		S3AccessKeyID:            r.str("AWS_ACCESS_KEY_ID", ""),
		S3SecretAccessKey:        r.str("AWS_SECRET_ACCESS_KEY", ""),
		S3UnsignedPayload:        r.boolean("S3_UNSIGNED_PAYLOAD", true),
		S3CallTimeout:            r.duration("S3_CALL_TIMEOUT", 30*time.Second),
		S3DialTimeout:            r.duration("S3_DIAL_TIMEOUT", 5*time.Second),
		DatabaseStatementTimeout: r.duration("DATABASE_STATEMENT_TIMEOUT", 30*time.Second),
		HTTPAddr:                 r.str("HTTP_ADDR", ":8082"),
		TLSCertFile:              r.str("TLS_CERT_FILE", ""),
		TLSKeyFile:               r.str("TLS_KEY_FILE", ""),
		MetricsAddr:              r.str("METRICS_ADDR", ":8080"),
		MetricsSecure:            r.boolean("METRICS_SECURE", true),
		MetricsCertDir:           r.str("METRICS_CERT_DIR", ""),
		ProbeAddr:                r.str("PROBE_ADDR", ":8081"),
		SessionNamespace:         r.str("SESSION_NAMESPACE", "default"),
		WatchNamespace:           r.str("WATCH_NAMESPACE", ""),
		LeaderElection:           r.boolean("LEADER_ELECTION", false),
		LeaderElectionNamespace:  r.str("LEADER_ELECTION_NAMESPACE", ""),
		LeaseDuration:            r.duration("LEASE_DURATION", 15*time.Second),
		AdminGroups:              r.list("ADMIN_GROUPS", nil),
		AuthCacheTTL:             r.duration("AUTH_CACHE_TTL", 30*time.Second),
		AuthRequireJWT:           r.boolean("AUTH_REQUIRE_JWT", true),
		AuthAudiences:            r.listOrEmpty("AUTH_AUDIENCES", []string{DefaultAudience}),
		UploadPartTimeout:        r.duration("UPLOAD_PART_TIMEOUT", 25*time.Second),
		StaleLockAfter:           r.duration("STALE_LOCK_AFTER", session.DefaultStaleLockAfter),
		SessionTTL:               r.duration("SESSION_TTL", time.Hour),
		SessionRetention:         r.duration("SESSION_RETENTION", 168*time.Hour),
		ExpiredRetention:         r.duration("EXPIRED_RETENTION", 10*time.Minute),
		OrphanSweepInterval:      r.duration("ORPHAN_SWEEP_INTERVAL", 5*time.Minute),
		OrphanUploadMinAge:       r.duration("ORPHAN_UPLOAD_MIN_AGE", 15*time.Minute),
		MaxActiveSessions:        r.integer("MAX_ACTIVE_SESSIONS_PER_USER", 20),
		UploadGroups:             r.list("UPLOAD_ALLOWED_GROUPS", nil),
		ResyncInterval:           r.duration("RESYNC_INTERVAL", 30*time.Second),
		ReadHeaderTimeout:        r.duration("HTTP_READ_HEADER_TIMEOUT", 10*time.Second),
		ShutdownGrace:            r.duration("SHUTDOWN_GRACE", 30*time.Second),
		FinalizeTimeout:          r.duration("FINALIZE_TIMEOUT", 5*time.Minute),
		ReconcileTimeout:         r.duration("RECONCILE_TIMEOUT", 5*time.Minute),
		AllowedContentTypes:      r.list("ALLOWED_CONTENT_TYPES", session.DefaultContentTypes),
		MaxFileSizeBytes:         r.bytes("MAX_FILE_SIZE_BYTES", 5*session.GiB),
		MaxFilesPerSession:       r.integer("MAX_FILES_PER_SESSION", session.DefaultMaxFiles),
		MaxPartSizeBytes:         r.bytes("MAX_PART_SIZE_BYTES", session.DefaultMaxPartSize),
		MaxJSONBodyBytes:         r.bytes("MAX_JSON_BODY_BYTES", 64<<10),
		JSONBodyTimeout:          r.duration("JSON_BODY_TIMEOUT", 10*time.Second),
		PartBufferBudget:         r.bytes("PART_BUFFER_BUDGET_BYTES", 256*session.MiB),
		SpillBudget:              r.bytes("SPILL_BUDGET_BYTES", 2*session.GiB),
		SpillDir:                 r.str("SPILL_DIR", os.TempDir()),
		SlugConflictStrategy:     r.str("SLUG_CONFLICT_STRATEGY", "AUTO_APPEND"),
		RedisKeyPrefix:           r.str("REDIS_KEY_PREFIX", "mocupload:"),
		AllowBrowserUploads:      r.boolean("ALLOW_BROWSER_UPLOADS", false),
		AllowedUploadOrigins:     r.list("ALLOWED_UPLOAD_ORIGINS", nil),
		LogLevel:                 r.str("LOG_LEVEL", "info"),
		LogFormat:                r.str("LOG_FORMAT", "json"),
	}
	c.FinalizeLimit, c.FinalizeWindow = r.rate("FINALIZE_RATE_LIMIT", "10/1m")
	c.CreateLimit, c.CreateWindow = r.rate("SESSION_CREATE_RATE_LIMIT", "30/1m")
	if c.MaxPartSizeBytes < session.MinPartSize || c.MaxPartSizeBytes > session.MaxPartSize {
		r.fail("MAX_PART_SIZE_BYTES", fmt.Sprint(c.MaxPartSizeBytes), "between 5MiB and 5GiB")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		r.fail("TLS_CERT_FILE", c.TLSCertFile, "set together with TLS_KEY_FILE (both or neither)")
	}
	if c.SlugConflictStrategy != "AUTO_APPEND" && c.SlugConflictStrategy != "PROMPT_USER" {
		r.fail("SLUG_CONFLICT_STRATEGY", c.SlugConflictStrategy, "AUTO_APPEND or PROMPT_USER")
	}
	return c, r.err
}

// DefaultAudience is the audience of tokens for the upload API unless
// AUTH_AUDIENCES says otherwise: a token bound to it is no key to the
// Kubernetes API, so one leaked from an upload cannot be replayed there.
const DefaultAudience = "uploads.mocs.dev"

// broadGroups are groups every caller of a kind belongs to: naming one in
// ADMIN_GROUPS would make every such caller an admin of every session.
var broadGroups = []string{"system:authenticated", "system:serviceaccounts", "system:unauthenticated"}

// UploadStepTimeout bounds one file's activation step: S3's create (with its
// retries) and recording the upload's id.
func (c Config) UploadStepTimeout() time.Duration { return 2*c.S3CallTimeout + 30*time.Second }

// Validate checks what the manager needs before it starts.
func (c Config) Validate() error {
	if c.PartURLTTL < time.Second || c.PartURLTTL > 15*time.Minute {
		return fmt.Errorf("PART_URL_TTL (%s) must be between 1s and 15m", c.PartURLTTL)
	}
	if c.OrphanUploadMinAge <= c.UploadStepTimeout() {
		return fmt.Errorf("ORPHAN_UPLOAD_MIN_AGE (%s) must exceed 2 × S3_CALL_TIMEOUT + 30s (%s): an upload younger than that may still be recorded by its creator",
			c.OrphanUploadMinAge, c.UploadStepTimeout())
	}
	for _, g := range c.AdminGroups {
		if slices.Contains(broadGroups, g) {
			return fmt.Errorf("ADMIN_GROUPS must not contain %s: every %s would be an admin of every session; "+
				"name a dedicated group instead", g, strings.TrimPrefix(g, "system:"))
		}
	}
	var missing []string
	if c.DatabaseURL == "" {
		missing = append(missing, "DATABASE_URL")
	}
	if c.RedisURL == "" {
		missing = append(missing, "REDIS_URL")
	}
	if c.S3Bucket == "" {
		missing = append(missing, "S3_BUCKET")
	}
	if len(missing) > 0 {
		return fmt.Errorf("required configuration missing: %s", strings.Join(missing, ", "))
	}
	return nil
}

type reader struct {
	lookup func(string) (string, bool)
	err    error
}

func (r *reader) fail(name, val, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("config: %s=%q: want %s", name, val, want)
	}
}

func (r *reader) str(name, def string) string {
	if v, ok := r.lookup(name); ok && v != "" {
		return v
	}
	return def
}

func (r *reader) list(name string, def []string) []string {
	v, ok := r.lookup(name)
	if !ok || strings.TrimSpace(v) == "" {
		return def
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// listOrEmpty is list, except that a variable set to "" means an empty list
// rather than the default.
func (r *reader) listOrEmpty(name string, def []string) []string {
	if v, ok := r.lookup(name); ok && strings.TrimSpace(v) == "" {
		return nil
	}
	return r.list(name, def)
}

func (r *reader) boolean(name string, def bool) bool {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, v, "true or false")
	}
	return b
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail(name, v, "a positive Go duration such as 30s or 5m")
	}
	return d
}

func (r *reader) integer(name string, def int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		r.fail(name, v, "a positive whole number")
	}
	return n
}

var sizeRE = regexp.MustCompile(`^(\d+)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?$`)

func (r *reader) bytes(name string, def int64) int64 {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := ParseBytes(v)
	if err != nil {
		r.fail(name, v, "a byte count such as 268435456 or 256MiB")
	}
	return n
}

// ParseBytes parses "1048576", "256MiB", "5GiB", "10MB".
func ParseBytes(v string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[m[2]]
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", v)
	}
	return n * mult, nil
}

// rate parses "10/1m" (a count per window).
func (r *reader) rate(name, def string) (int, time.Duration) {
	v := r.str(name, def)
	count, window, ok := strings.Cut(v, "/")
	n, err1 := strconv.Atoi(count)
	d, err2 := time.ParseDuration(window)
	if !ok || err1 != nil || err2 != nil || n <= 0 || d <= 0 {
		r.fail(name, v, "COUNT/WINDOW such as 10/1m")
		return 10, time.Minute
	}
	return n, d
}

// FormatWindow renders a rate-limit window as the contract shows it ("1m", "30s").
func FormatWindow(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return d.String()
	}
}
