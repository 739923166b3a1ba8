// Package config reads the operator's configuration from command-line flags
// and the environment. Every variable has a documented default; a bad value
// is an error at start-up, never a silent fallback.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Config is the whole operator configuration. Each field is filled by its row
// of the settings table (settings.go), which holds its variable, default and
// bounds.
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
	var c Config
	for _, st := range settings {
		r.read(&c, st)
	}
	c.origins = r.origins
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
	for _, st := range settings {
		if st.isReq && st.text(&c) == "" {
			missing = append(missing, c.Name(st.env))
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
	flag    func(string) (val, from string, ok bool)
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

// read sets one setting of c: from its flag when one was given, else from
// its variable, else from its default; a value given empty (a list, blank)
// means the default too, except for a setting where empty is a value
// (AUTH_AUDIENCES: no audience).
func (r *reader) read(c *Config, st setting) {
	var v, from string
	var ok bool
	if r.flag != nil {
		v, from, ok = r.flag(st.env)
	}
	if !ok {
		v, ok = r.lookup(st.env)
		from = st.env
	}
	blank := v == "" || st.kind == kindList && strings.TrimSpace(v) == ""
	switch {
	case ok && blank && st.emptyIsValue:
		r.origin(st.env, from)
	case !ok || blank:
		v = st.def
	default:
		r.origin(st.env, from)
	}
	if err := st.apply(c, v); err != nil {
		var bounds outOfBounds
		want := st.want
		switch {
		case errors.As(err, &bounds):
			want = string(bounds)
		case !errors.Is(err, errUnacceptable):
			want += " (" + err.Error() + ")"
		}
		r.fail(st.env, v, want)
	}
}

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

func (r *reader) origin(name, from string) {
	if r.origins == nil {
		r.origins = map[string]string{}
	}
	r.origins[name] = from
}

// splitList splits a comma-separated list, dropping blanks ("" is none).
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
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
