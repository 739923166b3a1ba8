// Package config reads the operator's configuration from command-line flags
// and the environment. Every variable has a documented default; a bad value
// is an error at start-up, never a silent fallback.
package config

import (
	"fmt"
	"net/url"
	"os"
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

	HTTPAddr    string
	TLSCertFile string
	TLSKeyFile  string
	// TLSCASecret, when set, is the Secret (in SessionNamespace) that keeps the
	// CA the operator signs its own serving certificate with (TLSDNSNames).
	TLSCASecret      string
	TLSDNSNames      []string
	TLSCAConfigMap   string
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
	// AuthIssuers, when set, are the only token issuers ("iss") accepted;
	// others are refused without a TokenReview.
	AuthIssuers []string
	// AuthFailureLimit failed authentications per AuthFailureWindow from one
	// client address; past it, 429 before any TokenReview.
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// TenantCreateLimit session creations per TenantCreateWindow per tenant
	// (session.TenantOf), HTTP and manifests together.
	TenantCreateLimit  int
	TenantCreateWindow time.Duration
	// GetLimit session GETs per GetWindow per user on a replica.
	GetLimit  int
	GetWindow time.Duration
	// FinalizeLimitWithoutRedis is what limits finalize while Redis is
	// unreachable: "none" (fail open, the contract's default) or "local"
	// (each replica's own in-memory log with the same limit).
	FinalizeLimitWithoutRedis string

	// MaxPartsInFlightPerUser bounds one user's part requests at once on a
	// replica; MinPartRate is the slowest a part body may arrive after
	// MinPartRateGrace (0: no minimum).
	MaxPartsInFlightPerUser int
	// PartBufferSharePerTenant is the percentage of the part memory and of the
	// spill budget one tenant's parts may hold (session.TenantOf).
	PartBufferSharePerTenant int
	MinPartRate              int64
	MinPartRateGrace         time.Duration

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
	// ResourcelessSessionGrace is how long a session's resource must be gone
	// (deleted without its finalizer running) before the leader removes the
	// session like a delete.
	ResourcelessSessionGrace time.Duration
	// KeptSessionsPerUser bounds the finished resources the upload API
	// created that one owner keeps (0: no bound).
	KeptSessionsPerUser int
	StaleLockAfter      time.Duration
	SessionTTL          time.Duration
	SessionRetention    time.Duration
	ResyncInterval      time.Duration
	ReadHeaderTimeout   time.Duration
	// MaxIdleConnections bounds the upload API's idle keep-alive connections.
	MaxIdleConnections int
	ShutdownGrace      time.Duration
	FinalizeTimeout    time.Duration
	ReconcileTimeout   time.Duration

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

	// PprofAddr serves net/http/pprof; empty (the default) serves nothing.
	PprofAddr string

	// origins maps a variable to the flag or variable that supplied its value;
	// absent means the default.
	origins map[string]string
}

// FromEnv reads the configuration from the process environment.
func FromEnv() (Config, error) { return Load(os.LookupEnv) }

// Load reads the configuration through lookup (os.LookupEnv in production, a
// map in tests).
func Load(lookup func(string) (string, bool)) (Config, error) {
	return load(&reader{lookup: lookup})
}

// Origin names what supplied the variable's value: its flag ("--session-ttl"),
// the variable itself ("SESSION_TTL"), or "" for the default.
func (c Config) Origin(name string) string { return c.origins[name] }

// FromFlag reports whether a command-line flag supplied the variable's value.
func (c Config) FromFlag(name string) bool { return strings.HasPrefix(c.origins[name], "-") }

// Name is how messages refer to a variable: by what supplied its value, or,
// for a default, by the variable and its flag.
func (c Config) Name(v string) string {
	if o := c.origins[v]; o != "" {
		return o
	}
	return v + " (--" + FlagName(v) + ")"
}

func load(r *reader) (Config, error) {
	c := Config{
		DatabaseURL:               r.str("DATABASE_URL", ""),
		RedisURL:                  r.str("REDIS_URL", ""),
		S3Endpoint:                r.str("S3_ENDPOINT", ""),
		S3PresignEndpoint:         r.str("S3_PRESIGN_ENDPOINT", ""),
		PartURLTTL:                r.duration("PART_URL_TTL", 15*time.Minute),
		S3Region:                  r.str("S3_REGION", "us-east-1"),
		S3Bucket:                  r.str("S3_BUCKET", ""),
		S3AccessKeyID:             r.str("AWS_ACCESS_KEY_ID", ""),
		S3SecretAccessKey:         r.str("AWS_SECRET_ACCESS_KEY", ""),
		S3UnsignedPayload:         r.boolean("S3_UNSIGNED_PAYLOAD", true),
		S3CallTimeout:             r.duration("S3_CALL_TIMEOUT", 30*time.Second),
		S3DialTimeout:             r.duration("S3_DIAL_TIMEOUT", 5*time.Second),
		DatabaseStatementTimeout:  r.duration("DATABASE_STATEMENT_TIMEOUT", 30*time.Second),
		HTTPAddr:                  r.str("HTTP_ADDR", ":8082"),
		TLSCertFile:               r.str("TLS_CERT_FILE", ""),
		TLSKeyFile:                r.str("TLS_KEY_FILE", ""),
		TLSCASecret:               r.str("TLS_CA_SECRET", ""),
		TLSDNSNames:               r.list("TLS_DNS_NAMES", nil),
		TLSCAConfigMap:            r.str("TLS_CA_CONFIGMAP", ""),
		MetricsAddr:               r.str("METRICS_ADDR", ":8080"),
		MetricsSecure:             r.boolean("METRICS_SECURE", true),
		MetricsCertDir:            r.str("METRICS_CERT_DIR", ""),
		ProbeAddr:                 r.str("PROBE_ADDR", ":8081"),
		SessionNamespace:          r.str("SESSION_NAMESPACE", "default"),
		WatchNamespace:            r.str("WATCH_NAMESPACE", ""),
		LeaderElection:            r.boolean("LEADER_ELECTION", false),
		LeaderElectionNamespace:   r.str("LEADER_ELECTION_NAMESPACE", ""),
		LeaseDuration:             r.duration("LEASE_DURATION", 15*time.Second),
		AdminGroups:               r.list("ADMIN_GROUPS", nil),
		AuthCacheTTL:              r.duration("AUTH_CACHE_TTL", 30*time.Second),
		AuthRequireJWT:            r.boolean("AUTH_REQUIRE_JWT", true),
		AuthAudiences:             r.listOrEmpty("AUTH_AUDIENCES", []string{DefaultAudience}),
		AuthIssuers:               r.list("AUTH_ISSUERS", nil),
		FinalizeLimitWithoutRedis: r.str("FINALIZE_LIMIT_WITHOUT_REDIS", "none"),
		MaxPartsInFlightPerUser:   r.integer("MAX_PARTS_IN_FLIGHT_PER_USER", 8),
		PartBufferSharePerTenant:  r.integer("PART_BUFFER_SHARE_PER_TENANT", 25),
		MinPartRate:               r.byteRate("MIN_PART_RATE", 64<<10),
		MinPartRateGrace:          r.duration("MIN_PART_RATE_GRACE", 10*time.Second),
		UploadPartTimeout:         r.duration("UPLOAD_PART_TIMEOUT", 25*time.Second),
		StaleLockAfter:            r.duration("STALE_LOCK_AFTER", session.DefaultStaleLockAfter),
		SessionTTL:                r.duration("SESSION_TTL", time.Hour),
		SessionRetention:          r.duration("SESSION_RETENTION", 168*time.Hour),
		ExpiredRetention:          r.duration("EXPIRED_RETENTION", 10*time.Minute),
		OrphanSweepInterval:       r.duration("ORPHAN_SWEEP_INTERVAL", 5*time.Minute),
		OrphanUploadMinAge:        r.duration("ORPHAN_UPLOAD_MIN_AGE", 15*time.Minute),
		ResourcelessSessionGrace:  r.duration("RESOURCELESS_SESSION_GRACE", 10*time.Minute),
		KeptSessionsPerUser:       r.count("KEPT_SESSIONS_PER_USER", 100),
		MaxActiveSessions:         r.integer("MAX_ACTIVE_SESSIONS_PER_USER", 20),
		UploadGroups:              r.list("UPLOAD_ALLOWED_GROUPS", nil),
		ResyncInterval:            r.duration("RESYNC_INTERVAL", 30*time.Second),
		ReadHeaderTimeout:         r.duration("HTTP_READ_HEADER_TIMEOUT", 10*time.Second),
		MaxIdleConnections:        r.integer("MAX_IDLE_CONNECTIONS", 512),
		ShutdownGrace:             r.duration("SHUTDOWN_GRACE", 30*time.Second),
		FinalizeTimeout:           r.duration("FINALIZE_TIMEOUT", 5*time.Minute),
		ReconcileTimeout:          r.duration("RECONCILE_TIMEOUT", 5*time.Minute),
		AllowedContentTypes:       r.list("ALLOWED_CONTENT_TYPES", session.DefaultContentTypes),
		MaxFileSizeBytes:          r.bytes("MAX_FILE_SIZE_BYTES", 5*session.GiB),
		MaxFilesPerSession:        r.integer("MAX_FILES_PER_SESSION", session.DefaultMaxFiles),
		MaxPartSizeBytes:          r.bytes("MAX_PART_SIZE_BYTES", session.DefaultMaxPartSize),
		MaxJSONBodyBytes:          r.bytes("MAX_JSON_BODY_BYTES", 64<<10),
		JSONBodyTimeout:           r.duration("JSON_BODY_TIMEOUT", 10*time.Second),
		PartBufferBudget:          r.bytes("PART_BUFFER_BUDGET_BYTES", 256*session.MiB),
		SpillBudget:               r.bytes("SPILL_BUDGET_BYTES", 2*session.GiB),
		SpillDir:                  r.str("SPILL_DIR", os.TempDir()),
		SlugConflictStrategy:      r.str("SLUG_CONFLICT_STRATEGY", "AUTO_APPEND"),
		RedisKeyPrefix:            r.str("REDIS_KEY_PREFIX", "mocupload:"),
		AllowBrowserUploads:       r.boolean("ALLOW_BROWSER_UPLOADS", false),
		AllowedUploadOrigins:      r.list("ALLOWED_UPLOAD_ORIGINS", nil),
		LogLevel:                  r.str("LOG_LEVEL", "info"),
		LogFormat:                 r.str("LOG_FORMAT", "json"),
		PprofAddr:                 r.str("PPROF_ADDR", ""),
	}
	c.FinalizeLimit, c.FinalizeWindow = r.rate("FINALIZE_RATE_LIMIT", "10/1m")
	c.CreateLimit, c.CreateWindow = r.rate("SESSION_CREATE_RATE_LIMIT", "30/1m")
	c.AuthFailureLimit, c.AuthFailureWindow = r.rate("AUTH_FAILURE_LIMIT", "100/1m")
	c.GetLimit, c.GetWindow = r.rate("GET_RATE_LIMIT", "600/1m")
	c.TenantCreateLimit, c.TenantCreateWindow = r.rate("SESSION_CREATE_RATE_LIMIT_PER_TENANT", "120/1m")
	if c.FinalizeLimitWithoutRedis != "none" && c.FinalizeLimitWithoutRedis != "local" {
		r.fail("FINALIZE_LIMIT_WITHOUT_REDIS", c.FinalizeLimitWithoutRedis, "none or local")
	}
	if c.PartBufferSharePerTenant < 1 || c.PartBufferSharePerTenant > 100 {
		r.fail("PART_BUFFER_SHARE_PER_TENANT", fmt.Sprint(c.PartBufferSharePerTenant), "a percentage from 1 to 100")
	}
	if c.MaxPartsInFlightPerUser < 1 {
		r.fail("MAX_PARTS_IN_FLIGHT_PER_USER", fmt.Sprint(c.MaxPartsInFlightPerUser), "at least 1")
	}
	if c.MaxIdleConnections < 1 {
		r.fail("MAX_IDLE_CONNECTIONS", fmt.Sprint(c.MaxIdleConnections), "at least 1")
	}
	c.origins = r.origins
	if c.MaxPartSizeBytes < session.MinPartSize || c.MaxPartSizeBytes > session.MaxPartSize {
		r.fail("MAX_PART_SIZE_BYTES", fmt.Sprint(c.MaxPartSizeBytes), "between 5MiB and 5GiB")
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		r.fail("TLS_CERT_FILE", c.TLSCertFile, "set together with "+c.Name("TLS_KEY_FILE")+" (both or neither)")
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		r.fail("TLS_KEY_FILE", c.TLSKeyFile, "set together with "+c.Name("TLS_CERT_FILE")+" (both or neither)")
	case c.TLSCertFile != "" && c.TLSCASecret != "":
		r.fail("TLS_CA_SECRET", c.TLSCASecret, "unset while "+c.Name("TLS_CERT_FILE")+" is set (one source of certificates)")
	case c.TLSCASecret != "" && len(c.TLSDNSNames) == 0:
		r.fail("TLS_DNS_NAMES", "", "the names of the operator's Services, to sign with "+c.Name("TLS_CA_SECRET"))
	case c.TLSCAConfigMap != "" && c.TLSCertFile == "" && c.TLSCASecret == "":
		r.fail("TLS_CA_CONFIGMAP", c.TLSCAConfigMap, "set with "+c.Name("TLS_CA_SECRET")+" or "+c.Name("TLS_CERT_FILE")+" (a CA to publish)")
	}
	for _, name := range []string{"S3_ENDPOINT", "S3_PRESIGN_ENDPOINT"} {
		v := c.S3Endpoint
		if name == "S3_PRESIGN_ENDPOINT" {
			v = c.S3PresignEndpoint
		}
		if err := validEndpoint(v); err != nil {
			r.fail(name, v, "an http(s) URL of a host, such as https://s3.example.com")
		}
	}
	if c.SlugConflictStrategy != "AUTO_APPEND" && c.SlugConflictStrategy != "PROMPT_USER" {
		r.fail("SLUG_CONFLICT_STRATEGY", c.SlugConflictStrategy, "AUTO_APPEND or PROMPT_USER")
	}
	return c, r.err
}

// validEndpoint checks an S3 endpoint setting: empty (AWS), or an absolute
// http(s) URL of a host with no credentials, query or fragment.
func validEndpoint(v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("not an http(s) URL of a host")
	}
	return nil
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
		return fmt.Errorf("%s (%s) must be between 1s and 15m", c.Name("PART_URL_TTL"), c.PartURLTTL)
	}
	if c.OrphanUploadMinAge <= c.UploadStepTimeout() {
		return fmt.Errorf("%s (%s) must exceed 2 × %s + 30s (%s): an upload younger than that may still be recorded by its creator",
			c.Name("ORPHAN_UPLOAD_MIN_AGE"), c.OrphanUploadMinAge, c.Name("S3_CALL_TIMEOUT"), c.UploadStepTimeout())
	}
	for _, g := range c.AdminGroups {
		if slices.Contains(broadGroups, g) {
			return fmt.Errorf("%s must not contain %s: every %s would be an admin of every session; "+
				"name a dedicated group instead", c.Name("ADMIN_GROUPS"), g, strings.TrimPrefix(g, "system:"))
		}
	}
	var missing []string
	for _, req := range []struct{ name, val string }{
		{"DATABASE_URL", c.DatabaseURL}, {"REDIS_URL", c.RedisURL}, {"S3_BUCKET", c.S3Bucket},
	} {
		if req.val == "" {
			missing = append(missing, c.Name(req.name))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("required configuration missing: %s", strings.Join(missing, ", "))
	}
	return nil
}

type reader struct {
	lookup func(string) (string, bool)
	// flag returns the value a command-line flag gave the variable and that
	// flag's name ("--session-ttl"); nil when there are no flags.
	flag func(string) (val, from string, ok bool)
	// record, when set, is told of every variable read, with its default.
	record  func(name string, k kind, def string)
	origins map[string]string
	err     error
}

// kind is what a variable holds, as --help names it.
type kind string

const (
	kindString   kind = "string"
	kindList     kind = "list"
	kindBool     kind = "bool"
	kindDuration kind = "duration"
	kindInt      kind = "int"
	kindBytes    kind = "bytes"
	kindRate     kind = "rate"
	kindByteRate kind = "bytes/s"
)

func (r *reader) fail(name, val, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("config: %s=%q: want %s", r.source(name), val, want)
	}
}

// source names what supplied a variable's value, for errors.
func (r *reader) source(name string) string {
	if o := r.origins[name]; o != "" {
		return o
	}
	return name
}

// get returns the variable's value: the flag's when one was given, else the
// environment's.
func (r *reader) get(name string, k kind, def string) (v, from string, ok bool) {
	if r.record != nil {
		r.record(name, k, def)
	}
	if r.flag != nil {
		v, from, ok = r.flag(name)
	}
	if !ok {
		v, ok = r.lookup(name)
		from = name
	}
	if ok && v != "" {
		r.origin(name, from)
	}
	return v, from, ok
}

func (r *reader) origin(name, from string) {
	if r.origins == nil {
		r.origins = map[string]string{}
	}
	r.origins[name] = from
}

func (r *reader) value(name string, k kind, def string) string {
	v, _, _ := r.get(name, k, def)
	return v
}

func (r *reader) str(name, def string) string {
	if v := r.value(name, kindString, def); v != "" {
		return v
	}
	return def
}

func (r *reader) list(name string, def []string) []string {
	return splitList(r.value(name, kindList, strings.Join(def, ",")), def)
}

func splitList(v string, def []string) []string {
	if strings.TrimSpace(v) == "" {
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
	v, from, ok := r.get(name, kindList, strings.Join(def, ","))
	if ok && strings.TrimSpace(v) == "" {
		r.origin(name, from)
		return nil
	}
	return splitList(v, def)
}

func (r *reader) boolean(name string, def bool) bool {
	v := r.value(name, kindBool, strconv.FormatBool(def))
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
	v := r.value(name, kindDuration, formatDuration(def))
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
	v := r.value(name, kindInt, strconv.Itoa(def))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		r.fail(name, v, "a positive whole number")
	}
	return n
}

// count reads a whole number that may be 0 ("no bound").
func (r *reader) count(name string, def int) int {
	v := r.value(name, kindInt, strconv.Itoa(def))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		r.fail(name, v, "a whole number, 0 or more")
	}
	return n
}

func (r *reader) bytes(name string, def int64) int64 {
	v := r.value(name, kindBytes, FormatBytes(def))
	if v == "" {
		return def
	}
	n, err := ParseBytes(v)
	if err != nil {
		r.fail(name, v, "a byte count such as 268435456, 256MiB or 256Mi ("+err.Error()+")")
	}
	return n
}

// byteRate parses a byte count per second ("64KiB/s"; "0" for none).
func (r *reader) byteRate(name string, def int64) int64 {
	v := r.value(name, kindByteRate, FormatBytes(def)+"/s")
	switch v {
	case "":
		return def
	case "0":
		return 0
	}
	n, err := ParseBytes(strings.TrimSuffix(v, "/s"))
	if err != nil || !strings.HasSuffix(v, "/s") || n < 0 {
		r.fail(name, v, "bytes per second such as 64KiB/s, or 0 for none")
		return def
	}
	return n
}

// rate parses "10/1m" (a count per window).
func (r *reader) rate(name, def string) (int, time.Duration) {
	v := r.value(name, kindRate, def)
	if v == "" {
		v = def
	}
	count, window, ok := strings.Cut(v, "/")
	n, err1 := strconv.Atoi(count)
	d, err2 := time.ParseDuration(window)
	if !ok || err1 != nil || err2 != nil || n <= 0 || d <= 0 {
		r.fail(name, v, "COUNT/WINDOW such as 10/1m")
		return 10, time.Minute
	}
	return n, d
}

// formatDuration renders a default the way the documentation writes it
// ("1h", "5m", "168h"), not time.Duration's "1h0m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
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
