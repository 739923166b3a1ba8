package config

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// Setting describes one configuration variable and its flag.
type Setting struct {
	Env  string // SESSION_TTL
	Flag string // session-ttl
	// Aliases are kubebuilder's customary names for the same setting.
	Aliases []string
	Kind    string // string, list, bool, duration, int, bytes or rate
	Default string
	Usage   string
}

// aliases lets kubebuilder's habitual flags work alongside the names derived
// from the variables.
var aliases = map[string][]string{
	"METRICS_ADDR":     {"metrics-bind-address"},
	"METRICS_CERT_DIR": {"metrics-cert-path"},
	"PROBE_ADDR":       {"health-probe-bind-address"},
	"LEADER_ELECTION":  {"leader-elect"},
}

// usage is each setting's --help text. It names settings, including the
// secret ones, and holds no secret.
var usage = map[string]string{ //nolint:gosec // G101: setting names, not credentials
	"DATABASE_URL":                         "PostgreSQL connection URL (required)",
	"REDIS_URL":                            "Redis URL for rate limits (required)",
	"S3_ENDPOINT":                          "S3-compatible endpoint, path-style; empty means AWS",
	"S3_PRESIGN_ENDPOINT":                  "S3 address presigned part URLs point at, when clients reach S3 elsewhere; empty means the S3 endpoint",
	"PART_URL_TTL":                         "validity of a presigned part URL, 1s to 15m",
	"S3_REGION":                            "S3 region",
	"S3_BUCKET":                            "bucket for all objects (required)",
	"AWS_ACCESS_KEY_ID":                    "S3 access key; empty uses the SDK's default chain",
	"AWS_SECRET_ACCESS_KEY":                "S3 secret key; prefer the environment, flags show in the process list",
	"S3_UNSIGNED_PAYLOAD":                  "allow part uploads signed with UNSIGNED-PAYLOAD over https or with a checksum S3 verifies",
	"S3_CALL_TIMEOUT":                      "bound of each S3 call other than a part upload, retries included",
	"S3_DIAL_TIMEOUT":                      "bound of connecting to S3",
	"DATABASE_STATEMENT_TIMEOUT":           "PostgreSQL statement_timeout unless the database URL sets one",
	"HTTP_ADDR":                            "address of the upload API",
	"TLS_CERT_FILE":                        "certificate to serve the upload API over HTTPS (with the key file)",
	"TLS_KEY_FILE":                         "key to serve the upload API over HTTPS (with the certificate file)",
	"TLS_CA_SECRET":                        "Secret in the session namespace keeping the CA the operator signs its own certificate with (created if missing): TLS for the upload API and metrics without cert-manager",
	"TLS_DNS_NAMES":                        "names of the certificate signed with the CA of TLS_CA_SECRET, comma-separated: the operator's Services",
	"TLS_CA_CONFIGMAP":                     "ConfigMap in the session namespace the leader publishes the CA certificate in (key ca.crt, never a key): the CA of TLS_CA_SECRET or ca.crt beside TLS_CERT_FILE",
	"METRICS_ADDR":                         "address of /metrics; 0 disables it",
	"METRICS_SECURE":                       "serve /metrics over HTTPS to callers allowed to get it",
	"METRICS_CERT_DIR":                     "directory of the metrics certificate; empty means self-signed",
	"PROBE_ADDR":                           "address of /healthz and /readyz",
	"SESSION_NAMESPACE":                    "namespace of sessions created over HTTP",
	"WATCH_NAMESPACE":                      "namespaces the reconciler watches, comma-separated; empty means all",
	"LEADER_ELECTION":                      "elect a leader among replicas (enable for more than one)",
	"LEADER_ELECTION_NAMESPACE":            "namespace of the leader's Lease; empty means the pod's",
	"LEASE_DURATION":                       "duration of the leader's Lease",
	"ADMIN_GROUPS":                         "groups whose members are admins, comma-separated",
	"AUTH_CACHE_TTL":                       "how long a TokenReview result is cached",
	"AUTH_REQUIRE_JWT":                     "refuse tokens that cannot be JWTs without asking the API server",
	"AUTH_AUDIENCES":                       "audiences tokens are reviewed for, comma-separated; empty accepts plain ServiceAccount tokens",
	"AUTH_ISSUERS":                         "token issuers (iss) accepted, comma-separated; others are refused without a TokenReview; empty accepts any",
	"GET_RATE_LIMIT":                       "session GETs per user per sliding window on a replica, COUNT/WINDOW",
	"AUTH_FAILURE_LIMIT":                   "failed authentications per client address per sliding window, COUNT/WINDOW; past it 429 before any TokenReview",
	"FINALIZE_LIMIT_WITHOUT_REDIS":         "finalize limit while Redis is unreachable: none (fail open) or local (each replica's own, same limit)",
	"PART_BUFFER_SHARE_PER_TENANT":         "percentage of PART_BUFFER_BUDGET_BYTES and of SPILL_BUDGET_BYTES one tenant's parts may hold (a namespace's ServiceAccounts are one tenant; beyond memory they spill; beyond both, 429)",
	"MAX_PARTS_IN_FLIGHT_PER_USER":         "part requests one user may have in flight at once on a replica",
	"MIN_PART_RATE":                        "slowest a part body may arrive once its grace is over (bytes/s, 0 for none); slower is cut with 408",
	"MIN_PART_RATE_GRACE":                  "time a part body has before MIN_PART_RATE applies",
	"UPLOAD_PART_TIMEOUT":                  "bound of one part request",
	"STALE_LOCK_AFTER":                     "age after which a finalize lock not renewed may be taken over",
	"SESSION_TTL":                          "how long a session lives, until its expiresAt",
	"SESSION_RETENTION":                    "how long Finalized sessions are kept before removal",
	"EXPIRED_RETENTION":                    "how long Expired and Failed sessions are kept after expiresAt before removal",
	"ORPHAN_SWEEP_INTERVAL":                "how often the leader aborts multipart uploads no session can use",
	"ORPHAN_UPLOAD_MIN_AGE":                "age an unused multipart upload must reach before it is aborted",
	"KEPT_SESSIONS_PER_USER":               "finished sessions created over HTTP one user keeps in SESSION_NAMESPACE; the oldest beyond it are deleted before their retention (0: no bound)",
	"RESOURCELESS_SESSION_GRACE":           "how long a session's resource must be gone (deleted without its finalizer) before the leader removes the session",
	"MAX_ACTIVE_SESSIONS_PER_USER":         "sessions a user may have open at once (admins exempt)",
	"UPLOAD_ALLOWED_GROUPS":                "only these groups (and admins) may create sessions, comma-separated; empty means everyone",
	"RESYNC_INTERVAL":                      "how often Active and Finalizing sessions are re-read from PostgreSQL",
	"HTTP_READ_HEADER_TIMEOUT":             "time within which request headers must arrive",
	"MAX_IDLE_CONNECTIONS":                 "keep-alive connections of the upload API waiting for a request; past it the longest idle is closed",
	"SHUTDOWN_GRACE":                       "time in-flight requests may take to finish on SIGTERM",
	"FINALIZE_TIMEOUT":                     "bound of a finalize started over HTTP",
	"RECONCILE_TIMEOUT":                    "bound of one reconcile",
	"ALLOWED_CONTENT_TYPES":                "media types files may have, comma-separated",
	"MAX_FILE_SIZE_BYTES":                  "largest file",
	"MAX_FILES_PER_SESSION":                "most files in a session",
	"MAX_PART_SIZE_BYTES":                  "largest partSizeBytes, 5MiB to 5GiB",
	"MAX_JSON_BODY_BYTES":                  "largest JSON request body",
	"JSON_BODY_TIMEOUT":                    "time within which a JSON request body must arrive",
	"PART_BUFFER_BUDGET_BYTES":             "memory for parts in flight",
	"SPILL_BUDGET_BYTES":                   "disk for parts spilled beyond the memory budget",
	"SPILL_DIR":                            "directory for spilled parts",
	"SLUG_CONFLICT_STRATEGY":               "AUTO_APPEND or PROMPT_USER",
	"REDIS_KEY_PREFIX":                     "prefix of the operator's Redis keys",
	"ALLOW_BROWSER_UPLOADS":                "answer CORS requests from the allowed origins",
	"ALLOWED_UPLOAD_ORIGINS":               "origins browsers may upload from, comma-separated",
	"LOG_LEVEL":                            "debug, info, warn or error (--zap-log-level wins)",
	"LOG_FORMAT":                           "json or console (--zap-encoder wins)",
	"PPROF_ADDR":                           "address of net/http/pprof; empty serves none",
	"FINALIZE_RATE_LIMIT":                  "finalize requests per user per sliding window, COUNT/WINDOW",
	"SESSION_CREATE_RATE_LIMIT_PER_TENANT": "session creations per tenant (a namespace's ServiceAccounts together) per sliding window, COUNT/WINDOW (admins exempt)",
	"SESSION_CREATE_RATE_LIMIT":            "session creations per user per sliding window, COUNT/WINDOW (admins exempt)",
}

// FlagName is the flag of a variable: SESSION_TTL → session-ttl.
func FlagName(env string) string { return strings.ReplaceAll(strings.ToLower(env), "_", "-") }

// Settings lists every configuration variable in the order Load reads them.
func Settings() []Setting {
	var out []Setting
	seen := map[string]bool{}
	r := &reader{lookup: func(string) (string, bool) { return "", false }}
	r.record = func(name string, k kind, def string) {
		if seen[name] {
			return
		}
		seen[name] = true
		out = append(out, Setting{Env: name, Flag: FlagName(name), Aliases: aliases[name], Kind: string(k),
			Default: def, Usage: usage[name]})
	}
	_, _ = load(r)
	return out
}

// Flags holds a flag per setting; flags given on the command line beat the
// environment.
type Flags struct {
	byEnv map[string][]*flagValue
}

// BindFlags registers on fs a flag per setting, named after its variable,
// and kubebuilder's customary aliases.
func BindFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{byEnv: map[string][]*flagValue{}}
	for _, s := range Settings() {
		for i, name := range append([]string{s.Flag}, s.Aliases...) {
			v := &flagValue{setting: s, name: name, alias: i > 0}
			fs.Var(v, name, s.Usage)
			f.byEnv[s.Env] = append(f.byEnv[s.Env], v)
		}
	}
	return f
}

// Load reads the configuration: a flag given on the command line wins, else
// the variable through lookup (os.LookupEnv in production), else the default.
func (f *Flags) Load(lookup func(string) (string, bool)) (Config, error) {
	for _, vs := range f.byEnv {
		var given []string
		for _, v := range vs {
			if v.set {
				given = append(given, "--"+v.name)
			}
		}
		if len(given) > 1 {
			return Config{}, fmt.Errorf("config: %s name the same setting; give one", strings.Join(given, " and "))
		}
	}
	return load(&reader{lookup: lookup, flag: f.given})
}

func (f *Flags) given(env string) (val, from string, ok bool) {
	for _, v := range f.byEnv[env] {
		if v.set {
			return v.val, "--" + v.name, true
		}
	}
	return "", "", false
}

// flagValue keeps a flag's text as given; Load parses it like the variable's
// value, so both fail alike and errors name the flag.
type flagValue struct {
	setting Setting
	name    string
	alias   bool
	val     string
	set     bool
}

func (v *flagValue) String() string {
	switch {
	case v == nil:
		return ""
	case v.set:
		return v.val
	default:
		return v.setting.Default
	}
}

func (v *flagValue) Set(s string) error {
	v.val, v.set = s, true
	return nil
}

// IsBoolFlag lets a boolean setting's flag stand alone (--leader-elect).
func (v *flagValue) IsBoolFlag() bool { return v != nil && v.setting.Kind == string(kindBool) }

// PrintUsage writes fs's flags the way flag.PrintDefaults does, with each
// setting's variable and default.
func PrintUsage(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := f.Value.(*flagValue)
		if !ok {
			typ, text := flag.UnquoteUsage(f)
			if t, ok := f.Value.(interface{ Type() string }); ok && typ == "value" {
				typ = t.Type() // controller-runtime's zap flags name theirs ("level", "encoder")
			}
			if typ != "" {
				typ = " " + typ
			}
			fmt.Fprintf(w, "  --%s%s\n    \t%s", f.Name, typ, strings.ReplaceAll(text, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				fmt.Fprintf(w, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(w)
			return
		}
		s := v.setting
		typ := " " + s.Kind
		if s.Kind == string(kindBool) {
			typ = ""
		}
		text := s.Usage
		if v.alias {
			text = "same as --" + s.Flag
		}
		fmt.Fprintf(w, "  --%s%s\n    \t%s (env %s, default %q)\n", f.Name, typ, text, s.Env, s.Default)
	})
}
