// Command manager runs the upload-operator: the UploadSession reconciler (on
// the elected leader) and the upload API (on every replica).
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/controllers"
	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/config"
	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/metrics"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/ratelimit"
	"github.com/mocs-dev/upload-operator/internal/servingcert"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
	"github.com/mocs-dev/upload-operator/webhook"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

// run is the start-up sequence; each step needs only what the ones before it
// made.
func run() error {
	cfg, zapOpts, err := loadConfig(flag.CommandLine, os.Args[1:], os.LookupEnv)
	if err != nil {
		return err
	}
	clk, err := testHooks()
	if err != nil {
		return err
	}
	logger, err := newLogger(os.Stderr, cfg, flag.CommandLine, zapOpts)
	if err != nil {
		return err
	}
	ctrl.SetLogger(logger)
	setupLog := logger.WithName("setup")

	ctx := ctrl.SetupSignalHandler()
	st, err := openStores(ctx, cfg, setupLog)
	if err != nil {
		return err
	}
	defer st.close()

	mgr, reviews, certs, err := newManager(ctx, cfg, logger)
	if err != nil {
		return err
	}
	svc, err := newUploadService(cfg, st, clk)
	if err != nil {
		return err
	}
	lim := newLimiters(cfg, st)
	if err := addControllers(mgr, cfg, svc, lim, logger); err != nil {
		return err
	}
	server, err := addUploadAPI(mgr, cfg, svc, lim, reviews, certs, logger)
	if err != nil {
		return err
	}
	if err := addProbes(mgr, st, server); err != nil {
		return err
	}
	setupLog.Info("starting manager", "httpAddr", cfg.HTTPAddr, "sessionNamespace", cfg.SessionNamespace)
	return mgr.Start(ctx)
}

// testHooks turns on the failpoints and clock skew of test builds (an error
// in other builds when asked for).
func testHooks() (skewedClock, error) {
	if err := failpoint.EnableFromEnv(); err != nil {
		return skewedClock{}, err
	}
	skew, err := failpoint.ClockSkew()
	if err != nil {
		return skewedClock{}, err
	}
	return skewedClock{skew}, nil
}

// stores are the manager's connections to PostgreSQL, S3 and Redis.
type stores struct {
	db *store.Store
	s3 *objectstore.Store
	// s3Probe asks S3 once (no SDK retries) so that readiness answers within
	// its timeout.
	s3Probe *objectstore.Store
	redis   *redis.Client
}

func (s *stores) close() {
	_ = s.redis.Close()
	s.db.Close()
}

func openStores(ctx context.Context, cfg config.Config, setupLog logr.Logger) (*stores, error) {
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	db, err := store.OpenWithOptions(startCtx, cfg.DatabaseURL, store.Options{StatementTimeout: cfg.DatabaseStatementTimeout})
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL: %w", err)
	}
	s := &stores{db: db}
	s.s3 = objectstore.New(objectstore.Options{
		Endpoint: cfg.S3Endpoint, Region: cfg.S3Region, Bucket: cfg.S3Bucket,
		AccessKeyID: cfg.S3AccessKeyID, SecretAccessKey: cfg.S3SecretAccessKey,
		Observer: metrics.S3Observer{}, UnsignedPayload: cfg.S3UnsignedPayload,
		CallTimeout: cfg.S3CallTimeout, DialTimeout: cfg.S3DialTimeout, PresignEndpoint: cfg.S3PresignEndpoint,
	})
	s.s3Probe = objectstore.New(objectstore.Options{
		Endpoint: cfg.S3Endpoint, Region: cfg.S3Region, Bucket: cfg.S3Bucket,
		AccessKeyID: cfg.S3AccessKeyID, SecretAccessKey: cfg.S3SecretAccessKey, MaxAttempts: 1, DialTimeout: time.Second,
	})
	if err := s.s3.HeadBucket(startCtx); err != nil {
		setupLog.Error(err, "S3 bucket not reachable at start; readiness will report it")
	}
	if s.redis, err = ratelimit.NewClient(cfg.RedisURL); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", cfg.Name("REDIS_URL"), err)
	}
	return s, nil
}

// newManager makes the controller-runtime manager, the client TokenReviews
// go through and, with TLS_CA_SECRET, the operator's own serving certificate.
func newManager(ctx context.Context, cfg config.Config, logger logr.Logger) (ctrl.Manager, kubernetes.Interface, *servingcert.Source, error) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(uploadsv1.AddToScheme(scheme))

	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	// client-go's default 5 QPS / burst 10 caps reconcile throughput far below
	// what a burst of sessions needs; raised deliberately.
	restCfg.QPS, restCfg.Burst = 200, 400
	// TokenReviews (and the metrics endpoint's access reviews) get a client
	// of their own with its own rate limit, so a flood of logins cannot starve
	// the reconciler's requests (nor the reverse).
	reviewCfg := rest.CopyConfig(restCfg)
	reviewCfg.QPS, reviewCfg.Burst = 50, 100
	reviews, err := kubernetes.NewForConfig(reviewCfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("TokenReview client: %w", err)
	}
	// Scrapers' reviews have a client (and QPS) of their own again: a flood
	// of logins that takes the upload API's review budget leaves the scrapes
	// theirs.
	scrapeCfg := rest.CopyConfig(restCfg)
	scrapeCfg.QPS, scrapeCfg.Burst = 5, 10
	scrapeReviews, err := kubernetes.NewForConfig(scrapeCfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("metrics review client: %w", err)
	}
	own, err := kubernetes.NewForConfig(restCfg) // the operator's own Secret and ConfigMap
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	certs, err := servingCertificates(ctx, cfg, own)
	if err != nil {
		return nil, nil, nil, err
	}
	scrapers := &auth.Authenticator{Reviewer: auth.TokenReviewer{Client: scrapeReviews}, TTL: time.Minute, RequireJWT: cfg.AuthRequireJWT,
		Failures: &ratelimit.Local{Limit: cfg.AuthFailureLimit, Window: cfg.AuthFailureWindow}}
	opts := ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOptions(cfg, scrapers, scrapeReviews, certs),
		HealthProbeBindAddress:        cfg.ProbeAddr,
		PprofBindAddress:              cfg.PprofAddr, // off unless set (profiling, make bench -pprof)
		LeaderElection:                cfg.LeaderElection,
		LeaderElectionID:              "upload-operator.uploads.mocs.dev",
		LeaderElectionReleaseOnCancel: true,
		LeaderElectionNamespace:       cfg.LeaderElectionNamespace,
		LeaseDuration:                 ptr.To(cfg.LeaseDuration),
		RenewDeadline:                 ptr.To(cfg.LeaseDuration * 2 / 3),
		RetryPeriod:                   ptr.To(cfg.LeaseDuration / 7),
		// Long enough for the upload API to drain its parts in flight.
		GracefulShutdownTimeout: ptr.To(cfg.ShutdownGrace + 5*time.Second),
	}
	if watched := watchedNamespaces(cfg); len(watched) > 0 {
		namespaces := map[string]cache.Config{}
		for _, ns := range watched {
			namespaces[ns] = cache.Config{}
		}
		opts.Cache = cache.Options{DefaultNamespaces: namespaces}
	}
	mgr, err := ctrl.NewManager(restCfg, opts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create manager: %w", err)
	}
	if cfg.TLSCAConfigMap != "" {
		if err := mgr.Add(caPublisher(cfg, own, certs, logger)); err != nil {
			return nil, nil, nil, fmt.Errorf("set up the CA publisher: %w", err)
		}
	}
	return mgr, reviews, certs, nil
}

// servingCertificates loads (or, on a first start, creates) the CA of
// TLS_CA_SECRET and gives the replica a serving certificate signed by it for
// TLS_DNS_NAMES; nil without TLS_CA_SECRET.
func servingCertificates(ctx context.Context, cfg config.Config, cs kubernetes.Interface) (*servingcert.Source, error) {
	if cfg.TLSCASecret == "" {
		return nil, nil
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ca, err := servingcert.EnsureAuthority(actx, cs, cfg.SessionNamespace, cfg.TLSCASecret, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name("TLS_CA_SECRET"), err)
	}
	return &servingcert.Source{Authority: ca, Names: cfg.TLSDNSNames}, nil
}

// caPublisher keeps the CA certificate clients verify the operator with in
// TLS_CA_CONFIGMAP: the operator's own CA, or the ca.crt mounted beside
// TLS_CERT_FILE (cert-manager's Secret, which clients must not read).
func caPublisher(cfg config.Config, cs kubernetes.Interface, certs *servingcert.Source, logger logr.Logger) *servingcert.Publisher {
	read := servingcert.FileCA(filepath.Join(filepath.Dir(cfg.TLSCertFile), "ca.crt"))
	if certs != nil {
		read = func() ([]byte, error) { return certs.Authority.CertPEM, nil }
	}
	return &servingcert.Publisher{Client: cs, Namespace: cfg.SessionNamespace,
		Name: cfg.TLSCAConfigMap, Read: read, Log: logger.WithName("ca-publisher")}
}

// newUploadService sets up what parts, sessions and finalizes go through,
// within the memory budget.
// watchedNamespaces is WATCH_NAMESPACE as a list (nil: all).
func watchedNamespaces(cfg config.Config) []string {
	var out []string
	for _, ns := range strings.Split(cfg.WatchNamespace, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

func newUploadService(cfg config.Config, st *stores, clk skewedClock) (*uploads.Service, error) {
	// The process is meant to stay within the part buffer budget + 64 MiB.
	// The mapped binary (text and read-only data, ~32 MiB resident) is outside
	// what the Go runtime controls, and a soft limit can be overshot briefly
	// under churn, so process memory is held to budget + 24 MiB (or an
	// explicit GOMEMLIMIT, e.g. from the Deployment). The part buffers are
	// mapped outside the Go heap, so the runtime's soft limit is that bound
	// less what they hold now: the heap gets all of it while few parts are in
	// flight, and the collector does not run without pause at a limit the
	// buffers nearly fill (docs/performance.md, items 4 and 7, has the
	// measurements behind these figures).
	bound := cfg.PartBufferBudget + 24<<20
	if os.Getenv("GOMEMLIMIT") != "" {
		bound = debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(bound)
	if err := os.MkdirAll(cfg.SpillDir, 0o700); err != nil {
		return nil, fmt.Errorf("spill directory (%s): %w", cfg.Name("SPILL_DIR"), err)
	}
	buffers := partbuf.New(cfg.PartBufferBudget, cfg.SpillDir)
	buffers.OnResident = func(resident int64) { debug.SetMemoryLimit(bound - resident) }
	// Parts free their memory within about a transfer time on a busy replica;
	// waiting that long beats spilling to disk (see internal/partbuf).
	buffers.WaitForMemory = 2 * time.Second
	buffers.SpillBudget = cfg.SpillBudget
	buffers.OwnerShare = float64(cfg.PartBufferSharePerTenant) / 100
	metrics.RegisterPartBuffers(buffers)
	return &uploads.Service{
		DB: st.db, S3: st.s3, SessionTTL: cfg.SessionTTL, StaleLockAfter: cfg.StaleLockAfter, Clock: clk,
		Limits: session.Limits{AllowedContentTypes: cfg.AllowedContentTypes, MaxFileSizeBytes: cfg.MaxFileSizeBytes,
			MaxFiles: cfg.MaxFilesPerSession, MaxPartSizeBytes: cfg.MaxPartSizeBytes},
		Buffers: buffers, UploadStepTimeout: cfg.UploadStepTimeout(), PartURLTTL: cfg.PartURLTTL,
	}, nil
}

// addControllers adds the reconciler and the leader's background loops.
func addControllers(mgr ctrl.Manager, cfg config.Config, svc *uploads.Service, lim limiters, logger logr.Logger) error {
	if err := (&controllers.UploadSessionReconciler{
		Client:           mgr.GetClient(),
		Scheme:           mgr.GetScheme(),
		Recorder:         mgr.GetEventRecorder("upload-operator"),
		Uploads:          svc,
		Resync:           cfg.ResyncInterval,
		Retention:        cfg.SessionRetention,
		ExpiredRetention: cfg.ExpiredRetention,
		Timeout:          cfg.ReconcileTimeout,
		Admission: &controllers.Admission{AdminGroups: cfg.AdminGroups, UploadGroups: cfg.UploadGroups,
			MaxActive: cfg.MaxActiveSessions, CreateLimiter: lim.create, TenantCreateLimiter: lim.tenantCreate},
	}).SetupWithManager(mgr, 8); err != nil {
		return fmt.Errorf("set up reconciler: %w", err)
	}
	if err := mgr.Add(&controllers.OrphanSweep{Uploads: svc, Log: logger.WithName("orphan-sweep"),
		Interval: cfg.OrphanSweepInterval, MinAge: cfg.OrphanUploadMinAge, Kube: mgr.GetClient(),
		Live: mgr.GetAPIReader(), ResourceGrace: cfg.ResourcelessSessionGrace, Namespaces: watchedNamespaces(cfg),
		Kept: &controllers.KeptSessions{Kube: mgr.GetClient(), Log: logger.WithName("kept-sessions"),
			Namespace: cfg.SessionNamespace, PerOwner: cfg.KeptSessionsPerUser}}); err != nil {
		return fmt.Errorf("set up the orphan sweep: %w", err)
	}
	if err := mgr.Add(&controllers.PhaseGauge{Client: mgr.GetClient()}); err != nil {
		return fmt.Errorf("set up the phase gauge: %w", err)
	}
	return nil
}

// addUploadAPI adds the HTTP server of the upload API, which runs on every
// replica, and the notifier it hands finalized sessions to.
// limiters are the Redis rate limits, shared by the upload API and (for
// creation) the reconciler's admission of declared sessions.
type limiters struct{ finalize, create, tenantCreate *ratelimit.Limiter }

func newLimiters(cfg config.Config, st *stores) limiters {
	// Without Redis, finalize fails open unless told otherwise (the story's
	// decision); creation keeps each replica's own limit, which nothing asks
	// to give up.
	finalizeMode := ratelimit.FailOpen
	if cfg.FinalizeLimitWithoutRedis == "local" {
		finalizeMode = ratelimit.FailLocal
	}
	return limiters{
		finalize: &ratelimit.Limiter{Redis: st.redis, Prefix: cfg.RedisKeyPrefix, Limit: cfg.FinalizeLimit,
			Window: cfg.FinalizeWindow, OnFailOpen: metrics.RateLimitFailOpens.Inc, Unreachable: finalizeMode,
			OnLocal: metrics.RateLimitLocal.WithLabelValues("finalize").Inc},
		create: &ratelimit.Limiter{Redis: st.redis, Prefix: cfg.RedisKeyPrefix, Name: "create", Limit: cfg.CreateLimit,
			Window: cfg.CreateWindow, OnFailOpen: metrics.RateLimitFailOpens.Inc, Unreachable: ratelimit.FailLocal,
			OnLocal: metrics.RateLimitLocal.WithLabelValues("create").Inc},
		tenantCreate: &ratelimit.Limiter{Redis: st.redis, Prefix: cfg.RedisKeyPrefix, Name: "create-tenant", Limit: cfg.TenantCreateLimit,
			Window: cfg.TenantCreateWindow, OnFailOpen: metrics.RateLimitFailOpens.Inc, Unreachable: ratelimit.FailLocal,
			OnLocal: metrics.RateLimitLocal.WithLabelValues("create-tenant").Inc},
	}
}

func addUploadAPI(mgr ctrl.Manager, cfg config.Config, svc *uploads.Service, lim limiters,
	reviews kubernetes.Interface, certs *servingcert.Source, logger logr.Logger) (*webhook.Server, error) {
	limiter, createLimiter := lim.finalize, lim.create
	notifier := &webhook.Notifier{Kube: mgr.GetClient(), Log: logger.WithName("notifier")}
	api := &webhook.API{
		Log: logger.WithName("api"),
		Auth: &auth.Authenticator{Reviewer: auth.TokenReviewer{Client: reviews, Audiences: cfg.AuthAudiences}, AdminGroups: cfg.AdminGroups,
			TTL: cfg.AuthCacheTTL, RequireJWT: cfg.AuthRequireJWT, Audiences: cfg.AuthAudiences, Issuers: cfg.AuthIssuers,
			Failures: &ratelimit.Local{Limit: cfg.AuthFailureLimit, Window: cfg.AuthFailureWindow}},
		PartsInFlight:           &webhook.InFlight{Limit: cfg.MaxPartsInFlightPerUser},
		GetLimiter:              &ratelimit.Local{Limit: cfg.GetLimit, Window: cfg.GetWindow},
		GetLimitWindow:          config.FormatWindow(cfg.GetWindow),
		MinPartRate:             cfg.MinPartRate,
		MinPartRateGrace:        cfg.MinPartRateGrace,
		Uploads:                 svc,
		Kube:                    mgr.GetClient(),
		KubeReader:              mgr.GetAPIReader(),
		FinalizeTimeout:         cfg.FinalizeTimeout,
		SessionNamespace:        cfg.SessionNamespace,
		PartTimeout:             cfg.UploadPartTimeout,
		Notify:                  notifier.Notify,
		SlugStrategy:            cfg.SlugConflictStrategy,
		CORS:                    webhook.CORS{Enabled: cfg.AllowBrowserUploads, Origins: cfg.AllowedUploadOrigins},
		Limiter:                 ratelimit.HTTP{Limiter: limiter},
		LimitCount:              cfg.FinalizeLimit,
		LimitWindow:             config.FormatWindow(cfg.FinalizeWindow),
		CreateLimiter:           ratelimit.HTTP{Limiter: createLimiter},
		CreateLimitCount:        cfg.CreateLimit,
		CreateLimitWindow:       config.FormatWindow(cfg.CreateWindow),
		TenantCreateLimiter:     ratelimit.HTTP{Limiter: lim.tenantCreate},
		TenantCreateLimitCount:  cfg.TenantCreateLimit,
		TenantCreateLimitWindow: config.FormatWindow(cfg.TenantCreateWindow),
		MaxActiveSessions:       cfg.MaxActiveSessions,
		UploadGroups:            cfg.UploadGroups,
		MaxJSONBody:             cfg.MaxJSONBodyBytes,
		JSONBodyTimeout:         cfg.JSONBodyTimeout,
	}
	if err := mgr.Add(notifier); err != nil {
		return nil, fmt.Errorf("set up the notifier: %w", err)
	}
	server := &webhook.Server{Addr: cfg.HTTPAddr, Handler: api.Handler(), Log: logger.WithName("http"),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, ShutdownGrace: cfg.ShutdownGrace, MaxIdleConns: cfg.MaxIdleConnections,
		TLSCertFile: cfg.TLSCertFile, TLSKeyFile: cfg.TLSKeyFile}
	if certs != nil {
		server.GetCertificate = certs.GetCertificate
	}
	if err := mgr.Add(server); err != nil {
		return nil, fmt.Errorf("set up the upload API server: %w", err)
	}
	return server, nil
}

// addProbes adds /healthz and /readyz. Ready means able to take parts:
// PostgreSQL and the S3 bucket answer and the server is not draining. Redis is
// not checked: without it finalize is only not rate-limited (fail open), which
// degrades but does not stop service.
func addProbes(mgr ctrl.Manager, st *stores, server *webhook.Server) error {
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	probe := func(check func(context.Context) error) func(*http.Request) error {
		return func(r *http.Request) error {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			return check(ctx)
		}
	}
	for _, c := range []struct {
		name  string
		check healthz.Checker
	}{
		{"postgres", probe(st.db.Ping)},
		{"s3", probe(st.s3Probe.HeadBucket)},
		{"draining", func(*http.Request) error {
			if server.Draining() {
				return fmt.Errorf("shutting down")
			}
			return nil
		}},
	} {
		if err := mgr.AddReadyzCheck(c.name, c.check); err != nil {
			return fmt.Errorf("add readiness check %s: %w", c.name, err)
		}
	}
	return nil
}

// metricsOptions serves /metrics the kubebuilder way: over HTTPS, to callers
// the API server authenticates (TokenReview) and allows to `get` /metrics
// (SubjectAccessReview). METRICS_SECURE=false serves plain HTTP to anyone, for
// a mesh that authenticates scrapers itself or a machine of one's own.
func metricsOptions(cfg config.Config, scrapers *auth.Authenticator, client kubernetes.Interface,
	certs *servingcert.Source) metricsserver.Options {
	o := metricsserver.Options{BindAddress: cfg.MetricsAddr}
	if cfg.MetricsSecure {
		o.SecureServing = true
		o.CertDir = cfg.MetricsCertDir // empty: the operator's own or a self-signed certificate
		if cfg.MetricsCertDir == "" && certs != nil {
			o.TLSOpts = append(o.TLSOpts, func(c *tls.Config) { c.GetCertificate = certs.GetCertificate })
		}
		o.FilterProvider = func(*rest.Config, *http.Client) (metricsserver.Filter, error) {
			return auth.MetricsFilter(scrapers, client), nil
		}
	}
	return o
}

// skewedClock is the real clock shifted by a fixed offset: zero except in
// test builds, where the soak skews a replica's clock.
type skewedClock struct{ skew time.Duration }

func (c skewedClock) Now() time.Time                  { return time.Now().Add(c.skew) }
func (c skewedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
