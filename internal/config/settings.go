package config

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mocs-dev/upload-operator/internal/session"
)

// settings is every configuration variable, each declared once: its name (the
// flag is derived from it), its default, what --help and the settings table of
// docs/operations.md say of it, how its value is parsed and bounded, and the
// Config field it fills. Load, the flags, --help, Validate's required check,
// the docs table and the Helm chart's env test all read this table; a setting
// added here is everywhere at once, and one missing here is nowhere.
//
// Order is the docs table's and --help's. Rules that tie several settings
// together (TLS sources, the orphan age against S3's timeout) are in load and
// Validate.
var settings = []setting{
	str("DATABASE_URL", "", "PostgreSQL connection URL", func(c *Config) *string { return &c.DatabaseURL }).required(),
	str("REDIS_URL", "", "Redis URL for rate limits", func(c *Config) *string { return &c.RedisURL }).required(),
	str("S3_ENDPOINT", "", "S3-compatible endpoint, path-style; empty means AWS", func(c *Config) *string { return &c.S3Endpoint }).
		check(validEndpoint, endpointWant),
	str("S3_PRESIGN_ENDPOINT", "", "S3 address presigned part URLs point at, when clients reach S3 elsewhere; empty means the S3 endpoint",
		func(c *Config) *string { return &c.S3PresignEndpoint }).check(validEndpoint, endpointWant).
		doc("the S3 address direct sessions' presigned part URLs point at (one clients can reach; an http(s) URL; empty means `S3_ENDPOINT`); when it is plain `http://` to another host, part URLs need a declared `checksumSHA256`"),
	duration("PART_URL_TTL", 15*time.Minute, "validity of a presigned part URL, 1s to 15m", func(c *Config) *time.Duration { return &c.PartURLTTL }).
		within(int64(time.Second), int64(session.MaxPartURLTTL)).doc("how long a presigned part URL is valid (1s–15m; never past the session's expiry)"),
	str("S3_REGION", "us-east-1", "S3 region", func(c *Config) *string { return &c.S3Region }),
	str("S3_BUCKET", "", "bucket for all objects", func(c *Config) *string { return &c.S3Bucket }).required(),
	str("AWS_ACCESS_KEY_ID", "", "S3 access key; empty uses the SDK's default chain", func(c *Config) *string { return &c.S3AccessKeyID }),
	str("AWS_SECRET_ACCESS_KEY", "", "S3 secret key; prefer the environment, flags show in the process list", func(c *Config) *string { return &c.S3SecretAccessKey }),
	boolean("S3_UNSIGNED_PAYLOAD", true, "allow part uploads signed with UNSIGNED-PAYLOAD over https or with a checksum S3 verifies",
		func(c *Config) *bool { return &c.S3UnsignedPayload }).
		doc("allow part uploads signed with UNSIGNED-PAYLOAD instead of a hash of each body (see docs/benchmarks.md) — only over `https://` (or to a loopback endpoint) or when the client sent a `Content-MD5`, which S3 verifies (a CRC does not count, nor a SHA-256, which the operator checks itself: an upload S3 checks as a whole takes no SHA-256 part checksum); over plain http every other part is hashed and signed"),
	duration("S3_CALL_TIMEOUT", 30*time.Second, "bound of each S3 call other than a part upload, retries included", func(c *Config) *time.Duration { return &c.S3CallTimeout }).
		doc("bounds each S3 call other than a part upload, retries included (a completion gets ten times as long)"),
	duration("S3_DIAL_TIMEOUT", 5*time.Second, "bound of connecting to S3", func(c *Config) *time.Duration { return &c.S3DialTimeout }),
	duration("DATABASE_STATEMENT_TIMEOUT", 30*time.Second, "PostgreSQL statement_timeout unless the database URL sets one",
		func(c *Config) *time.Duration { return &c.DatabaseStatementTimeout }).
		doc("PostgreSQL `statement_timeout` (unless `DATABASE_URL` sets one); each call also has a client-side deadline 5 s longer"),
	str("HTTP_ADDR", ":8082", "address of the upload API", func(c *Config) *string { return &c.HTTPAddr }),
	str("TLS_CERT_FILE", "", "certificate to serve the upload API over HTTPS (with the key file)", func(c *Config) *string { return &c.TLSCertFile }).
		doc("certificate to serve the upload API over HTTPS, with `TLS_KEY_FILE` (empty: plain HTTP, unless `TLS_CA_SECRET`); a renewed certificate is picked up without a restart"),
	str("TLS_KEY_FILE", "", "key to serve the upload API over HTTPS (with the certificate file)", func(c *Config) *string { return &c.TLSKeyFile }),
	str("TLS_CA_SECRET", "", "Secret in the session namespace keeping the CA the operator signs its own certificate with (created if missing): TLS for the upload API and metrics without cert-manager",
		func(c *Config) *string { return &c.TLSCASecret }).
		doc("TLS without cert-manager: the operator keeps a CA in that Secret of `SESSION_NAMESPACE` (created if missing) and serves the upload API and metrics with a certificate it signs for `TLS_DNS_NAMES`; not with `TLS_CERT_FILE`"),
	list("TLS_DNS_NAMES", nil, "names of the certificate signed with the CA of TLS_CA_SECRET, comma-separated: the operator's Services",
		func(c *Config) *[]string { return &c.TLSDNSNames }),
	str("TLS_CA_CONFIGMAP", "", "ConfigMap in the session namespace the leader publishes the CA certificate in (key ca.crt, never a key): the CA of TLS_CA_SECRET or ca.crt beside TLS_CERT_FILE",
		func(c *Config) *string { return &c.TLSCAConfigMap }),
	str("METRICS_ADDR", ":8080", "address of /metrics; 0 disables it", func(c *Config) *string { return &c.MetricsAddr }).
		alias("metrics-bind-address"),
	boolean("METRICS_SECURE", true, "serve /metrics over HTTPS to callers allowed to get it", func(c *Config) *bool { return &c.MetricsSecure }),
	str("METRICS_CERT_DIR", "", "directory of the metrics certificate; empty means self-signed", func(c *Config) *string { return &c.MetricsCertDir }).
		alias("metrics-cert-path"),
	str("PROBE_ADDR", ":8081", "address of /healthz and /readyz", func(c *Config) *string { return &c.ProbeAddr }).
		alias("health-probe-bind-address"),
	str("SESSION_NAMESPACE", "default", "namespace of sessions created over HTTP", func(c *Config) *string { return &c.SessionNamespace }),
	str("WATCH_NAMESPACE", "", "namespaces the reconciler watches, comma-separated; empty means all", func(c *Config) *string { return &c.WatchNamespace }),
	boolean("LEADER_ELECTION", false, "elect a leader among replicas (enable for more than one)", func(c *Config) *bool { return &c.LeaderElection }).
		alias("leader-elect"),
	str("LEADER_ELECTION_NAMESPACE", "", "namespace of the leader's Lease; empty means the pod's", func(c *Config) *string { return &c.LeaderElectionNamespace }),
	duration("LEASE_DURATION", 15*time.Second, "duration of the leader's Lease", func(c *Config) *time.Duration { return &c.LeaseDuration }),
	list("ADMIN_GROUPS", nil, "groups whose members are admins, comma-separated", func(c *Config) *[]string { return &c.AdminGroups }).
		doc("comma-separated groups whose members are admins (`system:authenticated` and other groups of everyone are refused)"),
	duration("AUTH_CACHE_TTL", 30*time.Second, "how long a TokenReview result is cached", func(c *Config) *time.Duration { return &c.AuthCacheTTL }),
	boolean("AUTH_REQUIRE_JWT", true, "refuse tokens that cannot be JWTs without asking the API server", func(c *Config) *bool { return &c.AuthRequireJWT }).
		doc("refuse tokens that cannot be JWTs without asking the API server (off for opaque-token authenticators)"),
	listOrEmpty("AUTH_AUDIENCES", []string{DefaultAudience}, "audiences tokens are reviewed for, comma-separated; empty accepts plain ServiceAccount tokens",
		func(c *Config) *[]string { return &c.AuthAudiences }).
		doc("audiences tokens are reviewed for, comma-separated; empty accepts plain ServiceAccount tokens (for a migration)"),
	list("AUTH_ISSUERS", nil, "token issuers (iss) accepted, comma-separated; others are refused without a TokenReview; empty accepts any",
		func(c *Config) *[]string { return &c.AuthIssuers }),
	rate("AUTH_FAILURE_LIMIT", "100/1m", "failed authentications per client address per sliding window, COUNT/WINDOW; past it 429 before any TokenReview",
		func(c *Config) (*int, *time.Duration) { return &c.AuthFailureLimit, &c.AuthFailureWindow }).
		doc("failed authentications per client address per sliding window; past it `429` before any TokenReview (a token already known good still passes)"),
	rate("GET_RATE_LIMIT", "600/1m", "session GETs per user per sliding window on a replica, COUNT/WINDOW",
		func(c *Config) (*int, *time.Duration) { return &c.GetLimit, &c.GetWindow }).
		doc("session `GET`s per user per sliding window on a replica (`429`); a `GET` of a direct session lists every file in S3 and counts once per file"),
	oneOf("FINALIZE_LIMIT_WITHOUT_REDIS", "none", "finalize limit while Redis is unreachable: none (fail open) or local (each replica's own, same limit)",
		func(c *Config) *string { return &c.FinalizeLimitWithoutRedis }, "none", "local").
		doc("while Redis is unreachable: `none` fails open (the story's decision), `local` keeps each replica's own limit; creation always keeps it, and a Redis that is only slow is always decided locally"),
	integer("MAX_PARTS_IN_FLIGHT_PER_USER", 8, "part requests one user may have in flight at once on a replica", func(c *Config) *int { return &c.MaxPartsInFlightPerUser }).
		doc("part PUTs one user may have in flight on a replica (`429`, `window: \"in-flight\"`)"),
	percent("PART_BUFFER_SHARE_PER_TENANT", 25, "percentage of PART_BUFFER_BUDGET_BYTES and of SPILL_BUDGET_BYTES one tenant's parts may hold (a namespace's ServiceAccounts are one tenant; beyond memory they spill; beyond both, 429)",
		func(c *Config) *int { return &c.PartBufferSharePerTenant }).
		doc("percentage of `PART_BUFFER_BUDGET_BYTES` and of `SPILL_BUDGET_BYTES` one tenant's parts may hold (the ServiceAccounts of a namespace are one tenant; any other user is one): beyond its memory share a part spills, beyond both `429` (`window: \"buffers\"`)"),
	byteRate("MIN_PART_RATE", 64<<10, "slowest a part body may arrive once its grace is over (bytes/s, 0 for none); slower is cut with 408",
		func(c *Config) *int64 { return &c.MinPartRate }).
		doc("a part body slower than this once `MIN_PART_RATE_GRACE` is over is cut with `408 REQUEST_TIMEOUT` (`minBytesPerSecond`); `0` for none"),
	duration("MIN_PART_RATE_GRACE", 10*time.Second, "time a part body has before MIN_PART_RATE applies", func(c *Config) *time.Duration { return &c.MinPartRateGrace }),
	duration("UPLOAD_PART_TIMEOUT", 25*time.Second, "bound of one part request", func(c *Config) *time.Duration { return &c.UploadPartTimeout }),
	duration("STALE_LOCK_AFTER", session.DefaultStaleLockAfter, "age after which a finalize lock not renewed may be taken over",
		func(c *Config) *time.Duration { return &c.StaleLockAfter }).
		doc("a finalize lock not renewed for this long (on PostgreSQL's clock) may be taken over; its holder renews it every tenth of this"),
	duration("SESSION_TTL", time.Hour, "how long a session lives, until its expiresAt", func(c *Config) *time.Duration { return &c.SessionTTL }),
	duration("SESSION_RETENTION", 168*time.Hour, "how long Finalized sessions are kept before removal", func(c *Config) *time.Duration { return &c.SessionRetention }).
		doc("how long Finalized custom resources are kept before removal (the MOC rows and objects stay; the session stays readable over HTTP)"),
	duration("EXPIRED_RETENTION", 10*time.Minute, "how long Expired and Failed sessions are kept after expiresAt before removal",
		func(c *Config) *time.Duration { return &c.ExpiredRetention }),
	duration("ORPHAN_SWEEP_INTERVAL", 5*time.Minute, "how often the leader aborts multipart uploads no session can use",
		func(c *Config) *time.Duration { return &c.OrphanSweepInterval }).
		doc("how often the leader aborts multipart uploads no session can use (an activation that crashed or lost S3's reply, or was still creating when its session ended)"),
	duration("ORPHAN_UPLOAD_MIN_AGE", 15*time.Minute, "age an unused multipart upload must reach before it is aborted",
		func(c *Config) *time.Duration { return &c.OrphanUploadMinAge }).
		doc("how old such an upload must be before it is aborted; must exceed 2 × `S3_CALL_TIMEOUT` + 30 s (the bound of one activation step), plus any clock skew between replicas and S3"),
	duration("RESOURCELESS_SESSION_GRACE", 10*time.Minute, "how long a session's resource must be gone (deleted without its finalizer) before the leader removes the session",
		func(c *Config) *time.Duration { return &c.ResourcelessSessionGrace }).
		doc("a session whose resource was deleted without its finalizer running (patched away) is removed by the leader's sweep, like a delete, once the API server has shown the resource gone this long"),
	count("KEPT_SESSIONS_PER_USER", 100, "finished sessions created over HTTP one user keeps in SESSION_NAMESPACE; the oldest beyond it are deleted before their retention (0: no bound)",
		func(c *Config) *int { return &c.KeptSessionsPerUser }).
		doc("finished (Finalized, Expired, Failed) sessions created over HTTP one user keeps in `SESSION_NAMESPACE`; the leader deletes the oldest beyond it before their retention (their MOCs stay); `0` for no bound. Manifest-created sessions live in their tenants' namespaces: bound them with a ResourceQuota on `count/uploadsessions.uploads.mocs.dev`"),
	integer("MAX_ACTIVE_SESSIONS_PER_USER", 20, "sessions a user may have open at once (admins exempt)", func(c *Config) *int { return &c.MaxActiveSessions }).
		doc("sessions not yet finalized, expired or failed one user may have (`429`; admins exempt)"),
	list("UPLOAD_ALLOWED_GROUPS", nil, "only these groups (and admins) may create sessions, comma-separated; empty means everyone",
		func(c *Config) *[]string { return &c.UploadGroups }),
	duration("RESYNC_INTERVAL", 30*time.Second, "how often Active and Finalizing sessions are re-read from PostgreSQL",
		func(c *Config) *time.Duration { return &c.ResyncInterval }),
	duration("HTTP_READ_HEADER_TIMEOUT", 10*time.Second, "time within which request headers must arrive", func(c *Config) *time.Duration { return &c.ReadHeaderTimeout }).
		doc("slowloris defence: request headers must arrive within it"),
	integer("MAX_IDLE_CONNECTIONS", 512, "keep-alive connections of the upload API waiting for a request; past it the longest idle is closed",
		func(c *Config) *int { return &c.MaxIdleConnections }).
		doc("idle keep-alive connections of the upload API; past it the longest idle is closed (each holds a goroutine and buffers)"),
	duration("SHUTDOWN_GRACE", 30*time.Second, "time in-flight requests may take to finish on SIGTERM", func(c *Config) *time.Duration { return &c.ShutdownGrace }),
	duration("FINALIZE_TIMEOUT", 5*time.Minute, "bound of a finalize started over HTTP", func(c *Config) *time.Duration { return &c.FinalizeTimeout }).
		doc("bounds a finalize started over HTTP (it runs detached from the request)"),
	duration("RECONCILE_TIMEOUT", 5*time.Minute, "bound of one reconcile", func(c *Config) *time.Duration { return &c.ReconcileTimeout }),
	list("ALLOWED_CONTENT_TYPES", session.DefaultContentTypes, "media types files may have, comma-separated", func(c *Config) *[]string { return &c.AllowedContentTypes }).
		doc("media types files may have, comma-separated: by default PDF, PNG/JPEG/WebP/GIF, LDraw, Studio, zip, octet-stream (no SVG: it runs scripts when opened); objects are stored with the bare media type and `Content-Disposition: attachment`"),
	byteCount("MAX_FILE_SIZE_BYTES", 5*session.GiB, "largest file", func(c *Config) *int64 { return &c.MaxFileSizeBytes }),
	integer("MAX_FILES_PER_SESSION", session.DefaultMaxFiles, "most files in a session", func(c *Config) *int { return &c.MaxFilesPerSession }).
		doc("most files in a session, checked before any work per file"),
	byteCount("MAX_PART_SIZE_BYTES", session.DefaultMaxPartSize, "largest partSizeBytes, 5MiB to 5GiB", func(c *Config) *int64 { return &c.MaxPartSizeBytes }).
		within(session.MinPartSize, session.MaxPartSize),
	byteCount("MAX_JSON_BODY_BYTES", 64<<10, "largest JSON request body", func(c *Config) *int64 { return &c.MaxJSONBodyBytes }).
		doc("largest JSON request body (larger: `413`)"),
	duration("JSON_BODY_TIMEOUT", 10*time.Second, "time within which a JSON request body must arrive", func(c *Config) *time.Duration { return &c.JSONBodyTimeout }).
		doc("time within which a JSON request body must arrive (slower: `408`)"),
	byteCount("PART_BUFFER_BUDGET_BYTES", 256*session.MiB, "memory for parts in flight", func(c *Config) *int64 { return &c.PartBufferBudget }),
	byteCount("SPILL_BUDGET_BYTES", 2*session.GiB, "disk for parts spilled beyond the memory budget", func(c *Config) *int64 { return &c.SpillBudget }).
		doc("disk for spilled parts together (`503 SERVER_BUSY` beyond)"),
	str("SPILL_DIR", os.TempDir(), "directory for spilled parts", func(c *Config) *string { return &c.SpillDir }).
		docDefault("the OS temp dir"),
	oneOf("SLUG_CONFLICT_STRATEGY", "AUTO_APPEND", "AUTO_APPEND or PROMPT_USER", func(c *Config) *string { return &c.SlugConflictStrategy },
		"AUTO_APPEND", "PROMPT_USER"),
	str("REDIS_KEY_PREFIX", "mocupload:", "prefix of the operator's Redis keys", func(c *Config) *string { return &c.RedisKeyPrefix }),
	boolean("ALLOW_BROWSER_UPLOADS", false, "answer CORS requests from the allowed origins", func(c *Config) *bool { return &c.AllowBrowserUploads }),
	list("ALLOWED_UPLOAD_ORIGINS", nil, "origins browsers may upload from, comma-separated", func(c *Config) *[]string { return &c.AllowedUploadOrigins }),
	str("LOG_LEVEL", "info", "debug, info, warn or error (--zap-log-level wins)", func(c *Config) *string { return &c.LogLevel }),
	str("LOG_FORMAT", "json", "json or console (--zap-encoder wins)", func(c *Config) *string { return &c.LogFormat }).
		doc("json or console (`--zap-encoder` wins); `make dev` uses console"),
	str("PPROF_ADDR", "", "address of net/http/pprof; empty serves none", func(c *Config) *string { return &c.PprofAddr }).
		doc("address of `net/http/pprof` (profiling, `make bench -pprof`); empty serves none"),
	rate("FINALIZE_RATE_LIMIT", "10/1m", "finalize requests per user per sliding window, COUNT/WINDOW",
		func(c *Config) (*int, *time.Duration) { return &c.FinalizeLimit, &c.FinalizeWindow }),
	rate("SESSION_CREATE_RATE_LIMIT", "30/1m", "session creations per user per sliding window, COUNT/WINDOW (admins exempt)",
		func(c *Config) (*int, *time.Duration) { return &c.CreateLimit, &c.CreateWindow }),
	rate("SESSION_CREATE_RATE_LIMIT_PER_TENANT", "120/1m", "session creations per tenant (a namespace's ServiceAccounts together) per sliding window, COUNT/WINDOW (admins exempt)",
		func(c *Config) (*int, *time.Duration) { return &c.TenantCreateLimit, &c.TenantCreateWindow }).
		doc("session creations per tenant (the ServiceAccounts of a namespace together; any other user alone) per sliding window, HTTP and manifests (`429`, or `QuotaExceeded`; admins exempt)"),
}

// setting is one row of the table.
type setting struct {
	env     string
	aliases []string
	kind    kind
	def     string // the default as --help and the docs write it, and as parsed when unset
	shown   string // the docs' default when def depends on the machine ("" shows def)
	usage   string // --help's line
	docText string // the docs' longer text, markdown ("" uses usage)
	isReq   bool
	// emptyIsValue: a variable set to "" is a value (an empty list), not
	// "use the default".
	emptyIsValue bool
	// apply parses v into c; an error when v is not acceptable, which want
	// describes (errUnacceptable, or the parser's own words to add).
	apply func(c *Config, v string) error
	want  string
	// text reads a string setting back, for the required check; number
	// reads a duration or byte count back, for bounds.
	text   func(c *Config) string
	number func(c *Config) int64
}

// errUnacceptable is a value that does not parse or is out of bounds; want
// says what would be.
var errUnacceptable = errors.New("unacceptable")

// outOfBounds is a value that parses but is outside its setting's bounds,
// which it describes.
type outOfBounds string

func (o outOfBounds) Error() string { return string(o) }

// verdict is apply's answer from a plain test.
func verdict(ok bool) error {
	if ok {
		return nil
	}
	return errUnacceptable
}

func (s setting) alias(names ...string) setting  { s.aliases = names; return s }
func (s setting) doc(markdown string) setting    { s.docText = markdown; return s }
func (s setting) docDefault(text string) setting { s.shown = text; return s }
func (s setting) required() setting              { s.isReq = true; return s }

// check adds a test the value must pass besides parsing.
func (s setting) check(ok func(string) error, want string) setting {
	apply := s.apply
	s.apply = func(c *Config, v string) error {
		if ok(v) != nil {
			return errUnacceptable
		}
		return apply(c, v)
	}
	s.want = want
	return s
}

// within bounds a duration or byte count setting (inclusive).
func (s setting) within(lo, hi int64) setting {
	apply, number := s.apply, s.number
	bounds := "between " + FormatBytes(lo) + " and " + FormatBytes(hi)
	if s.kind == kindDuration {
		bounds = "a duration from " + formatDuration(time.Duration(lo)) + " to " + formatDuration(time.Duration(hi))
	}
	s.apply = func(c *Config, v string) error {
		if err := apply(c, v); err != nil {
			return err
		}
		if n := number(c); n < lo || n > hi {
			return outOfBounds(bounds)
		}
		return nil
	}
	return s
}

func str(env, def, usage string, field func(*Config) *string) setting {
	return setting{env: env, kind: kindString, def: def, usage: usage, want: "a value",
		apply: func(c *Config, v string) error { *field(c) = v; return nil },
		text:  func(c *Config) string { return *field(c) }}
}

func oneOf(env, def, usage string, field func(*Config) *string, choices ...string) setting {
	s := str(env, def, usage, field)
	s.apply = func(c *Config, v string) error { *field(c) = v; return verdict(slices.Contains(choices, v)) }
	s.want = strings.Join(choices, " or ")
	return s
}

func list(env string, def []string, usage string, field func(*Config) *[]string) setting {
	return setting{env: env, kind: kindList, def: strings.Join(def, ","), usage: usage, want: "a comma-separated list",
		apply: func(c *Config, v string) error { *field(c) = splitList(v); return nil },
		text:  func(c *Config) string { return strings.Join(*field(c), ",") }}
}

// listOrEmpty is a list whose variable set to "" means an empty list rather
// than the default.
func listOrEmpty(env string, def []string, usage string, field func(*Config) *[]string) setting {
	s := list(env, def, usage, field)
	s.emptyIsValue = true
	return s
}

func boolean(env string, def bool, usage string, field func(*Config) *bool) setting {
	return setting{env: env, kind: kindBool, def: strconv.FormatBool(def), usage: usage, want: "true or false",
		apply: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			*field(c) = b
			return verdict(err == nil)
		}}
}

func duration(env string, def time.Duration, usage string, field func(*Config) *time.Duration) setting {
	return setting{env: env, kind: kindDuration, def: formatDuration(def), usage: usage, want: "a positive Go duration such as 30s or 5m",
		apply: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			*field(c) = d
			return verdict(err == nil && d > 0)
		},
		number: func(c *Config) int64 { return int64(*field(c)) }}
}

// integer is a whole number of at least 1.
func integer(env string, def int, usage string, field func(*Config) *int) setting {
	return wholeNumber(env, def, usage, field, 1, "a positive whole number")
}

// count is a whole number that may be 0 ("no bound").
func count(env string, def int, usage string, field func(*Config) *int) setting {
	return wholeNumber(env, def, usage, field, 0, "a whole number, 0 or more")
}

func percent(env string, def int, usage string, field func(*Config) *int) setting {
	s := wholeNumber(env, def, usage, field, 1, "a percentage from 1 to 100")
	apply := s.apply
	s.apply = func(c *Config, v string) error {
		if err := apply(c, v); err != nil {
			return err
		}
		return verdict(*field(c) <= 100)
	}
	return s
}

func wholeNumber(env string, def int, usage string, field func(*Config) *int, least int, want string) setting {
	return setting{env: env, kind: kindInt, def: strconv.Itoa(def), usage: usage, want: want,
		apply: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			*field(c) = n
			return verdict(err == nil && n >= least)
		}}
}

func byteCount(env string, def int64, usage string, field func(*Config) *int64) setting {
	return setting{env: env, kind: kindBytes, def: FormatBytes(def), usage: usage,
		want: "a byte count such as 268435456, 256MiB or 256Mi",
		apply: func(c *Config, v string) error {
			n, err := ParseBytes(v)
			*field(c) = n
			return err
		},
		number: func(c *Config) int64 { return *field(c) }}
}

// byteRate is bytes per second ("64KiB/s"), or "0" for none.
func byteRate(env string, def int64, usage string, field func(*Config) *int64) setting {
	return setting{env: env, kind: kindByteRate, def: FormatBytes(def) + "/s", usage: usage,
		want: "bytes per second such as 64KiB/s, or 0 for none",
		apply: func(c *Config, v string) error {
			if v == "0" {
				*field(c) = 0
				return nil
			}
			n, err := ParseBytes(strings.TrimSuffix(v, "/s"))
			*field(c) = n
			return verdict(err == nil && strings.HasSuffix(v, "/s"))
		}}
}

// rate is a count per sliding window ("10/1m").
func rate(env, def, usage string, fields func(*Config) (*int, *time.Duration)) setting {
	return setting{env: env, kind: kindRate, def: def, usage: usage, want: "COUNT/WINDOW such as 10/1m",
		apply: func(c *Config, v string) error {
			count, window, ok := strings.Cut(v, "/")
			n, err1 := strconv.Atoi(count)
			d, err2 := time.ParseDuration(window)
			pn, pd := fields(c)
			*pn, *pd = n, d
			return verdict(ok && err1 == nil && err2 == nil && n > 0 && d > 0)
		}}
}

// endpointWant is what an S3 endpoint setting must be.
const endpointWant = "an http(s) URL of a host, such as https://s3.example.com"
