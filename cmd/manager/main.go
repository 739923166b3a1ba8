// Command manager runs the upload-operator: the UploadSession reconciler (on
// the elected leader) and the upload API (on every replica).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/controllers"
	"github.com/mocs-dev/upload-operator/internal/auth"
	"github.com/mocs-dev/upload-operator/internal/config"
	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/logging"
	"github.com/mocs-dev/upload-operator/internal/metrics"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/ratelimit"
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

func run() error {
	flag.Parse()
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := failpoint.EnableFromEnv(); err != nil {
		return err
	}
	skew, err := failpoint.ClockSkew()
	if err != nil {
		return err
	}
	clk := skewedClock{skew}
	logger, err := logging.New(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	ctrl.SetLogger(logger)
	setupLog := logger.WithName("setup")

	ctx := ctrl.SetupSignalHandler()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	db, err := store.OpenWithOptions(startCtx, cfg.DatabaseURL, store.Options{StatementTimeout: cfg.DatabaseStatementTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	s3 := objectstore.New(objectstore.Options{
		Endpoint: cfg.S3Endpoint, Region: cfg.S3Region, Bucket: cfg.S3Bucket,
		AccessKeyID: cfg.S3AccessKeyID, SecretAccessKey: cfg.S3SecretAccessKey,
		Observer: metrics.S3Observer{}, UnsignedPayload: cfg.S3UnsignedPayload,
		CallTimeout: cfg.S3CallTimeout, DialTimeout: cfg.S3DialTimeout, PresignEndpoint: cfg.S3PresignEndpoint,
	})
	// The readiness probe asks S3 once (no SDK retries) so it answers within its timeout.
	s3Probe := objectstore.New(objectstore.Options{
		Endpoint: cfg.S3Endpoint, Region: cfg.S3Region, Bucket: cfg.S3Bucket,
		AccessKeyID: cfg.S3AccessKeyID, SecretAccessKey: cfg.S3SecretAccessKey, MaxAttempts: 1, DialTimeout: time.Second,
	})
	if err := s3.HeadBucket(startCtx); err != nil {
		setupLog.Error(err, "S3 bucket not reachable at start; readiness will report it")
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(uploadsv1.AddToScheme(scheme))

	restCfg := ctrl.GetConfigOrDie()
	// client-go's default 5 QPS / burst 10 caps reconcile throughput far below
	// what a burst of sessions needs; raised deliberately.
	restCfg.QPS, restCfg.Burst = 200, 400
	// TokenReviews (and the metrics endpoint's access reviews) get a client
	// of their own with its own rate limit, so a flood of logins cannot starve
	// the reconciler's requests (nor the reverse).
	reviewCfg := rest.CopyConfig(restCfg)
	reviewCfg.QPS, reviewCfg.Burst = 50, 100
	clientset, err := kubernetes.NewForConfig(reviewCfg)
	if err != nil {
		return err
	}
	scrapers := &auth.Authenticator{Reviewer: auth.TokenReviewer{Client: clientset}, TTL: time.Minute, RequireJWT: cfg.AuthRequireJWT}
	opts := ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOptions(cfg, scrapers, clientset),
		HealthProbeBindAddress:        cfg.ProbeAddr,
		PprofBindAddress:              os.Getenv("PPROF_ADDR"), // off unless set (profiling, make bench -pprof)
		LeaderElection:                cfg.LeaderElection,
		LeaderElectionID:              "upload-operator.uploads.mocs.dev",
		LeaderElectionReleaseOnCancel: true,
		LeaderElectionNamespace:       cfg.LeaderElectionNamespace,
		LeaseDuration:                 ptrTo(cfg.LeaseDuration),
		RenewDeadline:                 ptrTo(cfg.LeaseDuration * 2 / 3),
		RetryPeriod:                   ptrTo(cfg.LeaseDuration / 7),
		// Long enough for the upload API to drain its parts in flight.
		GracefulShutdownTimeout: ptrTo(cfg.ShutdownGrace + 5*time.Second),
	}
	if cfg.WatchNamespace != "" {
		namespaces := map[string]cache.Config{}
		for _, ns := range strings.Split(cfg.WatchNamespace, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				namespaces[ns] = cache.Config{}
			}
		}
		opts.Cache = cache.Options{DefaultNamespaces: namespaces}
	}
	mgr, err := ctrl.NewManager(restCfg, opts)
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}

	// Part buffers are the bulk of the heap; without a limit the GC lets the
	// heap grow to twice what is live (GOGC=100), so RSS would reach about twice
	// the buffer budget under load. The process is meant to stay within the
	// budget + 64 MiB: the mapped binary (text and read-only data, ~32 MiB
	// resident) is outside what the Go runtime controls, and the soft limit can
	// be overshot briefly under churn (the soak saw 126 MiB of a 128 MiB bound
	// with budget + 32 MiB), so the soft limit for the runtime is budget +
	// 24 MiB. What is live besides the buffers is a few MiB, and buffers are
	// pointer-free and reused, so the GC this forces is cheap (make bench). An
	// explicit GOMEMLIMIT, e.g. from the Deployment, wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.PartBufferBudget + 24<<20)
	}
	if err := os.MkdirAll(cfg.SpillDir, 0o700); err != nil {
		return fmt.Errorf("spill directory: %w", err)
	}
	buffers := partbuf.New(cfg.PartBufferBudget, cfg.SpillDir)
	// Parts free their memory within about a transfer time on a busy replica;
	// waiting that long beats spilling to disk (see internal/partbuf).
	buffers.WaitForMemory = 2 * time.Second
	buffers.SpillBudget = cfg.SpillBudget
	metrics.RegisterPartBuffers(buffers)
	svc := &uploads.Service{
		DB: db, S3: s3, SessionTTL: cfg.SessionTTL, StaleLockAfter: cfg.StaleLockAfter, Now: clk.Now,
		Limits: session.Limits{AllowedContentTypes: cfg.AllowedContentTypes, MaxFileSizeBytes: cfg.MaxFileSizeBytes,
			MaxFiles: cfg.MaxFilesPerSession, MaxPartSizeBytes: cfg.MaxPartSizeBytes},
		Buffers: buffers, UploadStepTimeout: cfg.UploadStepTimeout(), PartURLTTL: cfg.PartURLTTL,
	}
	if err := (&controllers.UploadSessionReconciler{
		Client:           mgr.GetClient(),
		Scheme:           mgr.GetScheme(),
		Recorder:         mgr.GetEventRecorder("upload-operator"),
		Uploads:          svc,
		Resync:           cfg.ResyncInterval,
		Retention:        cfg.SessionRetention,
		ExpiredRetention: cfg.ExpiredRetention,
		Timeout:          cfg.ReconcileTimeout,
		Clock:            clk,
	}).SetupWithManager(mgr, 8); err != nil {
		return fmt.Errorf("set up reconciler: %w", err)
	}

	rdb, err := ratelimit.NewClient(cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	limiter := &ratelimit.Limiter{Redis: rdb, Prefix: cfg.RedisKeyPrefix, Limit: cfg.FinalizeLimit,
		Window: cfg.FinalizeWindow, OnFailOpen: metrics.RateLimitFailOpens.Inc}
	createLimiter := &ratelimit.Limiter{Redis: rdb, Prefix: cfg.RedisKeyPrefix, Name: "create", Limit: cfg.CreateLimit,
		Window: cfg.CreateWindow, OnFailOpen: metrics.RateLimitFailOpens.Inc}
	notifier := &webhook.Notifier{Kube: mgr.GetClient(), Log: logger.WithName("notifier")}
	api := &webhook.API{
		Log: logger.WithName("api"),
		Auth: &auth.Authenticator{Reviewer: auth.TokenReviewer{Client: clientset, Audiences: cfg.AuthAudiences}, AdminGroups: cfg.AdminGroups,
			TTL: cfg.AuthCacheTTL, RequireJWT: cfg.AuthRequireJWT},
		Uploads:           svc,
		Kube:              mgr.GetClient(),
		KubeReader:        mgr.GetAPIReader(),
		FinalizeTimeout:   cfg.FinalizeTimeout,
		SessionNamespace:  cfg.SessionNamespace,
		PartTimeout:       cfg.UploadPartTimeout,
		Notify:            notifier.Notify,
		SlugStrategy:      cfg.SlugConflictStrategy,
		CORS:              webhook.CORS{Enabled: cfg.AllowBrowserUploads, Origins: cfg.AllowedUploadOrigins},
		Limiter:           ratelimit.HTTP{Limiter: limiter},
		LimitCount:        cfg.FinalizeLimit,
		LimitWindow:       config.FormatWindow(cfg.FinalizeWindow),
		CreateLimiter:     ratelimit.HTTP{Limiter: createLimiter},
		CreateLimitCount:  cfg.CreateLimit,
		CreateLimitWindow: config.FormatWindow(cfg.CreateWindow),
		MaxActiveSessions: cfg.MaxActiveSessions,
		UploadGroups:      cfg.UploadGroups,
		MaxJSONBody:       cfg.MaxJSONBodyBytes,
		JSONBodyTimeout:   cfg.JSONBodyTimeout,
	}
	if err := mgr.Add(&controllers.OrphanSweep{Uploads: svc, Log: logger.WithName("orphan-sweep"),
		Interval: cfg.OrphanSweepInterval, MinAge: cfg.OrphanUploadMinAge}); err != nil {
		return fmt.Errorf("set up the orphan sweep: %w", err)
	}
	if err := mgr.Add(&controllers.PhaseGauge{Client: mgr.GetClient()}); err != nil {
		return err
	}
	if err := mgr.Add(notifier); err != nil {
		return err
	}
	server := &webhook.Server{Addr: cfg.HTTPAddr, Handler: api.Handler(), Log: logger.WithName("http"),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, ShutdownGrace: cfg.ShutdownGrace,
		TLSCertFile: cfg.TLSCertFile, TLSKeyFile: cfg.TLSKeyFile}
	if err := mgr.Add(server); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready means able to take parts: PostgreSQL and the S3 bucket answer and
	// the server is not draining. Redis is not checked: without it finalize is
	// only not rate-limited (fail open), which degrades but does not stop service.
	probe := func(check func(context.Context) error) func(*http.Request) error {
		return func(r *http.Request) error {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			return check(ctx)
		}
	}
	if err := mgr.AddReadyzCheck("postgres", probe(db.Ping)); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("s3", probe(s3Probe.HeadBucket)); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("draining", func(*http.Request) error {
		if server.Draining() {
			return fmt.Errorf("shutting down")
		}
		return nil
	}); err != nil {
		return err
	}
	setupLog.Info("starting manager", "httpAddr", cfg.HTTPAddr, "sessionNamespace", cfg.SessionNamespace)
	return mgr.Start(ctx)
}

// metricsOptions serves /metrics the kubebuilder way: over HTTPS, to callers
// the API server authenticates (TokenReview) and allows to `get` /metrics
// (SubjectAccessReview). METRICS_SECURE=false serves plain HTTP to anyone, for
// a mesh that authenticates scrapers itself or a machine of one's own.
func metricsOptions(cfg config.Config, scrapers *auth.Authenticator, client kubernetes.Interface) metricsserver.Options {
	o := metricsserver.Options{BindAddress: cfg.MetricsAddr}
	if cfg.MetricsSecure {
		o.SecureServing = true
		o.CertDir = cfg.MetricsCertDir // empty: a self-signed certificate
		o.FilterProvider = func(*rest.Config, *http.Client) (metricsserver.Filter, error) {
			return auth.MetricsFilter(scrapers, client), nil
		}
	}
	return o
}

func ptrTo[T any](v T) *T { return &v }

// skewedClock is the real clock shifted by a fixed offset: zero except in
// test builds, where the soak skews a replica's clock.
type skewedClock struct{ skew time.Duration }

func (c skewedClock) Now() time.Time                  { return time.Now().Add(c.skew) }
func (c skewedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
