// Package e2e runs the real manager binary against a real control plane,
// PostgreSQL, Redis and versitygw, and drives it the way users do: kubectl
// and HTTP.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/jackc/pgx/v5/pgxpool"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

var (
	stack   *localenv.Stack
	k8s     client.Client
	db      *pgxpool.Pool
	apiURL  string
	mgrLog  string
	repo    string
	manager *localenv.Process
	// managerBin is the manager built for this run; tests start more replicas of it.
	managerBin string
	// metricsURL is the main manager's /metrics.
	metricsURL string
)

// suiteStaleLockAfter is the stale-lock window of the suite's manager and, unless
// a test says otherwise, of the replicas tests start: a replica renewing on a
// longer window would hold locks that look stale to the manager.
const suiteStaleLockAfter = "3s"

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		if mgrLog != "" {
			if b, _ := os.ReadFile(mgrLog); len(b) > 0 {
				fmt.Fprintf(os.Stderr, "--- manager log ---\n%s\n", tail(b, 8000))
			}
		}
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx := context.Background()
	// envtest logs through controller-runtime; with no logger set it would
	// print a warning and a stack trace in the middle of the test output.
	ctrllog.SetLogger(logr.Discard())
	dir, err := os.MkdirTemp("", "mocupload-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if repo, err = localenv.RepoRoot(); err != nil {
		return 0, err
	}
	// Every manager and CLI process runs with the race detector; each writes
	// any race it finds to a report in raceDir, which fails the run.
	raceDir = filepath.Join(dir, "race")
	if err := os.MkdirAll(raceDir, 0o700); err != nil {
		return 0, err
	}
	os.Setenv("GORACE", "log_path="+filepath.Join(raceDir, "report")) //nolint:errcheck // cannot fail for this name
	if d := os.Getenv("E2E_COVERDIR"); d != "" {
		os.Setenv("GOCOVERDIR", d) //nolint:errcheck // cannot fail for this name
	}
	bin, err := localenv.BuildManager(ctx, dir, childBuild("failpoints"))
	if err != nil {
		return 0, err
	}
	managerBin = bin
	stack, err = localenv.StartStack(ctx, localenv.StackOptions{Dir: dir})
	if err != nil {
		return 0, err
	}
	defer stack.Stop()

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = uploadsv1.AddToScheme(scheme)
	if k8s, err = client.New(stack.Kube.Config, client.Options{Scheme: scheme}); err != nil {
		return 0, err
	}
	if db, err = pgxpool.New(ctx, stack.DatabaseURL); err != nil {
		return 0, err
	}
	defer db.Close()

	addr, err := localenv.FreeAddr()
	if err != nil {
		return 0, err
	}
	apiURL = "http://" + addr
	mgrLog = filepath.Join(dir, "manager.log")
	logf, err := os.Create(mgrLog)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	env := stack.ManagerEnv(addr)
	maddr, err := localenv.FreeAddr()
	if err != nil {
		return 0, err
	}
	env["METRICS_ADDR"] = maddr
	metricsURL = "https://" + maddr + "/metrics"
	env["SESSION_TTL"] = "1h"
	// Tests of replicas and leader election use namespaces of their own.
	env["WATCH_NAMESPACE"] = "default"
	env["ADMIN_GROUPS"] = "system:serviceaccounts:" + adminNamespace
	env["STALE_LOCK_AFTER"] = suiteStaleLockAfter
	env["RESYNC_INTERVAL"] = "1s"
	env["LOG_LEVEL"] = "debug"
	liftLimits(env)
	// The leader's sweep runs often enough for a test to see it remove a
	// session whose resource lost its finalizer (the other steps leave
	// anything younger than ORPHAN_UPLOAD_MIN_AGE alone).
	env["ORPHAN_SWEEP_INTERVAL"] = "2s"
	env["RESOURCELESS_SESSION_GRACE"] = "2s"
	if manager, err = localenv.StartProcess(bin, env, logf); err != nil {
		return 0, err
	}
	if err := manager.WaitHTTP(ctx, apiURL+"/healthz", time.Minute); err != nil {
		return 0, err
	}
	code := m.Run()
	if err := nothingLeftBehind(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "--- left behind after the tests ---\n%v\n", err)
		code = 1
	}
	if err := manager.Stop(20 * time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "the main manager did not exit cleanly: %v\n", err)
		code = 1
	}
	if b, err := os.ReadFile(mgrLog); err != nil {
		fmt.Fprintf(os.Stderr, "the main manager's output cannot be read: %v\n", err)
		code = 1
	} else if bad := badOutput(b); bad != "" {
		fmt.Fprintf(os.Stderr, "the main manager's output has %s\n", bad)
		code = 1
	}
	if reports := raceReports(); reports != "" {
		fmt.Fprintf(os.Stderr, "--- data races found by the manager or CLI processes ---\n%s\n", reports)
		code = 1
	}
	if code != 0 {
		if b, _ := os.ReadFile(mgrLog); len(b) > 0 {
			fmt.Fprintf(os.Stderr, "--- manager log (tail) ---\n%s\n", tail(b, 8000))
		}
	}
	return code, nil
}

// raceDir holds the race detector's reports of child processes.
var raceDir string

// childBuild is how the manager and CLI are built: with the race detector
// unless E2E_RACE=0 (a quicker local run; `make test` always races), and with
// coverage when E2E_COVERDIR names where their coverage goes (`make cover`).
func childBuild(tags ...string) localenv.Build {
	return localenv.Build{Tags: tags, Race: os.Getenv("E2E_RACE") != "0", Cover: os.Getenv("E2E_COVERDIR") != ""}
}

// badOutput names what a process's output must not hold: a panic, a fatal
// runtime error (a concurrent map write, a deadlock), or a race report
// (should GORACE's log_path not take effect).
func badOutput(b []byte) string {
	for _, bad := range []string{"panic:", "fatal error:", "WARNING: DATA RACE"} {
		if bytes.Contains(b, []byte(bad)) {
			return bad
		}
	}
	return ""
}

// raceReports returns the reports child processes wrote, if any.
func raceReports() string {
	files, _ := filepath.Glob(filepath.Join(raceDir, "report*"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(&b, "%s: cannot be read: %v\n", f, err)
		} else if len(data) > 0 {
			fmt.Fprintf(&b, "%s:\n%s\n", f, data)
		}
	}
	return b.String()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// liftLimits raises the per-user and per-tenant limits of a manager's env:
// many tests create, send and finalize as the same user at once (and their
// Redis windows are shared by every replica of the suite), so a replica with
// the defaults refuses them by the others' load. The limits themselves are
// tested on replicas of their own and in the webhook and controllers tests.
func liftLimits(env map[string]string) {
	for k, v := range map[string]string{
		"FINALIZE_RATE_LIMIT": "1000/1m", "SESSION_CREATE_RATE_LIMIT": "1000/1m",
		"SESSION_CREATE_RATE_LIMIT_PER_TENANT": "100000/1m", "MAX_ACTIVE_SESSIONS_PER_USER": "1000",
		"MAX_PARTS_IN_FLIGHT_PER_USER": "1000", "GET_RATE_LIMIT": "100000/1m",
		// Tests finalize hundreds of sessions as one user.
		"KEPT_SESSIONS_PER_USER": "0",
	} {
		env[k] = v
	}
}
