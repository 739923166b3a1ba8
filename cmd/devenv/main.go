// Command devenv is `make dev`: it starts a Kubernetes control plane,
// versitygw, a fresh PostgreSQL database and the operator on loopback, creates
// the dev ServiceAccounts and their tokens, writes bin/dev/env once the
// operator answers, and stops everything on Ctrl-C.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/mocs-dev/upload-operator/internal/config"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

const adminNamespace = "mocupload-admins"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "make dev:", err)
		os.Exit(1)
	}
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run() error {
	root, err := localenv.RepoRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "bin", "dev")
	envFile := filepath.Join(dir, "env")
	_ = os.Remove(envFile) // never leave a previous run's env pointing at nothing
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	_ = os.RemoveAll(filepath.Join(dir, "s3"))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	httpAddr := getenv("HTTP_ADDR", "127.0.0.1:8082")
	sessionNS := getenv("SESSION_NAMESPACE", "default")
	say("starting control plane, S3 (versitygw) and database …")
	st, err := localenv.StartStack(ctx, localenv.StackOptions{
		Dir:          dir,
		DatabaseName: getenv("DEV_DATABASE_NAME", "mocupload_dev"),
		FreshDB:      true,
		S3Addr:       getenv("DEV_S3_ADDR", "127.0.0.1:7070"),
		S3Bucket:     getenv("S3_BUCKET", "mocs"),
		S3AccessKey:  getenv("AWS_ACCESS_KEY_ID", "devaccesskey"),
		S3SecretKey:  getenv("AWS_SECRET_ACCESS_KEY", "devsecretkey"),
		S3LogFile:    filepath.Join(dir, "s3.log"),
		RedisURL:     os.Getenv("REDIS_URL"),
	})
	if err != nil {
		return err
	}
	defer func() {
		_ = os.Remove(envFile)
		say("stopping control plane, S3 and database …")
		_ = st.Stop()
		say("stopped")
	}()

	// Tokens for the upload API are bound to its audience (the first of
	// AUTH_AUDIENCES, as the operator checks), so they are no key to the
	// Kubernetes API; AUTH_AUDIENCES= (empty) gives plain tokens.
	audience := config.DefaultAudience
	if v, ok := os.LookupEnv("AUTH_AUDIENCES"); ok {
		audience, _, _ = strings.Cut(v, ",")
		audience = strings.TrimSpace(audience)
	}
	userToken, adminToken, err := devAccounts(ctx, st, sessionNS, audience)
	if err != nil {
		return err
	}

	env := st.ManagerEnv(httpAddr)
	env["REDIS_KEY_PREFIX"] = getenv("REDIS_KEY_PREFIX", "mocupload:")
	env["METRICS_ADDR"] = getenv("METRICS_ADDR", "127.0.0.1:8080")
	// On loopback, for a person at the machine: plain HTTP, as in a mesh that
	// authenticates scrapers itself (production serves HTTPS with auth).
	env["METRICS_SECURE"] = getenv("METRICS_SECURE", "false")
	env["PROBE_ADDR"] = getenv("PROBE_ADDR", "127.0.0.1:8081")
	env["SESSION_NAMESPACE"] = sessionNS
	env["ADMIN_GROUPS"] = getenv("ADMIN_GROUPS", "system:serviceaccounts:"+adminNamespace)
	env["ALLOW_BROWSER_UPLOADS"] = getenv("ALLOW_BROWSER_UPLOADS", "true")
	env["ALLOWED_UPLOAD_ORIGINS"] = getenv("ALLOWED_UPLOAD_ORIGINS", "http://localhost:3000,http://127.0.0.1:3000")
	env["LOG_FORMAT"] = getenv("LOG_FORMAT", "console")
	// Everything else the operator reads (SESSION_TTL, STALE_LOCK_AFTER, …)
	// passes through from `make dev`'s own environment.

	// The upload API is served over TLS with a certificate of a CA made for
	// this run (DEV_TLS=false serves plain HTTP, as behind a mesh that
	// terminates TLS); bin/dev/env points the CLI and curl at the CA.
	scheme, client := "http", http.DefaultClient
	var tlsFiles *localenv.TLS
	if getenv("DEV_TLS", "true") == "true" {
		host, _, _ := net.SplitHostPort(httpAddr)
		if tlsFiles, err = localenv.NewTLS(filepath.Join(dir, "tls"), host, "localhost"); err != nil {
			return fmt.Errorf("TLS certificate for make dev: %w", err)
		}
		env["TLS_CERT_FILE"], env["TLS_KEY_FILE"] = tlsFiles.CertFile, tlsFiles.KeyFile
		if client, err = localenv.ClientTrusting(tlsFiles.CAFile); err != nil {
			return err
		}
		scheme = "https"
	}

	mgrBin := getenv("DEV_MANAGER_BIN", filepath.Join(root, "bin", "manager"))
	say("starting the operator (%s) …", mgrBin)
	mgr, err := localenv.StartProcess(mgrBin, env, os.Stderr)
	if err != nil {
		return err
	}
	defer func() { _ = mgr.Stop(30 * time.Second) }()

	api := scheme + "://" + httpAddr
	if err := mgr.WaitHTTPWith(ctx, client, api+"/healthz", 2*time.Minute); err != nil {
		return err
	}

	exports := map[string]string{
		"KUBECONFIG":             st.Kubeconfig,
		"UPLOAD_API":             api,
		"DEV_USER_TOKEN":         userToken,
		"DEV_ADMIN_TOKEN":        adminToken,
		"DATABASE_URL":           st.DatabaseURL,
		"REDIS_URL":              st.RedisURL,
		"S3_ENDPOINT":            st.S3.Endpoint,
		"S3_BUCKET":              st.S3.Bucket,
		"AWS_ACCESS_KEY_ID":      st.S3.AccessKey,
		"AWS_SECRET_ACCESS_KEY":  st.S3.SecretKey,
		"SESSION_NAMESPACE":      sessionNS,
		"ALLOW_BROWSER_UPLOADS":  env["ALLOW_BROWSER_UPLOADS"],
		"ALLOWED_UPLOAD_ORIGINS": env["ALLOWED_UPLOAD_ORIGINS"],
		"UPLOAD_TOKEN_AUDIENCE":  audience,
	}
	if tlsFiles != nil {
		exports["UPLOAD_API_CA_FILE"] = tlsFiles.CAFile
		exports["CURL_CA_BUNDLE"] = tlsFiles.CAFile
	}
	if err := writeEnvFile(envFile, exports); err != nil {
		return err
	}
	rel, _ := filepath.Rel(mustGetwd(), envFile)
	say("ready: upload API at %s — in another shell: source %s && kubectl get uploadsessions -A (Ctrl-C here stops everything)", api, rel)

	select {
	case <-ctx.Done():
		return nil
	case <-mgr.Done():
		return fmt.Errorf("the operator exited; see its log above")
	}
}

// devAccounts creates ServiceAccounts dev-user (in the session namespace) and
// dev-admin (in a namespace of its own, so ADMIN_GROUPS can name its group)
// and returns tokens for audience ("": the API server's own), valid for 48
// hours.
func devAccounts(ctx context.Context, st *localenv.Stack, sessionNS, audience string) (string, string, error) {
	cs, err := kubernetes.NewForConfig(st.Kube.Config)
	if err != nil {
		return "", "", err
	}
	token := func(ns, name string) (string, error) {
		_, token, err := localenv.ServiceAccountToken(ctx, cs, ns, name, audience, 48*time.Hour)
		return token, err
	}
	user, err := token(sessionNS, "dev-user")
	if err != nil {
		return "", "", err
	}
	admin, err := token(adminNamespace, "dev-admin")
	return user, admin, err
}

// writeEnvFile writes KEY='value' exports atomically (temp file + rename), so
// a reader never sees half a file.
func writeEnvFile(path string, vars map[string]string) error {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# written by `make dev`; valid while it runs\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, localenv.ShellQuote(vars[k]))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}
