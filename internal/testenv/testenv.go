// Package testenv is the test support, kept apart from what ships: Main (a
// package's TestMain: the real services its tests need, then the goroutine
// leak check) and, below it, localenv (PostgreSQL databases, versitygw,
// envtest's API server and the single-node cluster, also for `make dev`),
// faultproxy (real network faults through toxiproxy), leakcheck, soakcheck
// (the soak's history checker) and httpfile (the .http parser of `make
// evidence`). The manager binary imports none of it; internal/failpoint is
// the one test hook it carries, compiled to no-ops without -tags failpoints.
package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/testenv/leakcheck"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

// Needs are the services a package's tests run against.
type Needs struct {
	// Database, when set, is the name prefix of a fresh PostgreSQL
	// database, dropped after the tests; OpenStore also opens it with the
	// product's store (migrated).
	Database  string
	OpenStore bool
	// S3 starts a versitygw of the package's own (bucket "mocs").
	S3 bool
	// Kube starts an API server (etcd and kube-apiserver built here).
	Kube bool
	// Failpoints: the tests stop the code at failpoints, so the package
	// refuses to run without -tags failpoints.
	Failpoints bool
	// NoLeakCheck skips the goroutine check after the tests (envtest's
	// clients keep theirs until the process ends).
	NoLeakCheck bool
}

// Env is what Main started, for the package's variables.
type Env struct {
	DatabaseURL string
	Store       *store.Store
	S3          *localenv.S3
	Kube        *localenv.Kube
}

// Main starts what needs asks for, hands it to ready (which sets the
// package's variables), runs the tests, stops everything and then, unless
// asked not to, fails the run for any goroutine still running: one the code
// under test did not stop. It exits the process.
func Main(m *testing.M, needs Needs, ready func(*Env) error) {
	code, err := run(m, needs, ready)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test set-up:", err)
		code = 1
	}
	if code == 0 && !needs.NoLeakCheck {
		code = leakcheck.Check()
	}
	os.Exit(code)
}

func run(m *testing.M, needs Needs, ready func(*Env) error) (int, error) {
	if needs.Failpoints && !failpoint.Compiled {
		return 0, fmt.Errorf("these tests stop the code at failpoints: run them with -tags failpoints (make test does)")
	}
	ctx := context.Background()
	env := &Env{}
	if needs.Kube {
		// envtest logs through controller-runtime; with no logger set it
		// would print a warning and a stack trace instead.
		ctrllog.SetLogger(logr.Discard())
		kube, err := localenv.StartKube(ctx)
		if err != nil {
			return 0, err
		}
		defer func() { _ = kube.Stop() }()
		env.Kube = kube
	}
	if needs.Database != "" {
		url, drop, err := localenv.CreateDatabase(ctx, localenv.RandomName(needs.Database), false)
		if err != nil {
			return 0, err
		}
		defer drop()
		env.DatabaseURL = url
		if needs.OpenStore {
			if env.Store, err = store.Open(ctx, url); err != nil {
				return 0, err
			}
			defer env.Store.Close()
		}
	}
	if needs.S3 {
		dir, err := os.MkdirTemp("", "s3-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		if env.S3, err = localenv.StartS3(ctx, localenv.S3Options{Dir: dir, Bucket: "mocs"}); err != nil {
			return 0, err
		}
		defer env.S3.Stop()
	}
	if ready != nil {
		if err := ready(env); err != nil {
			return 0, err
		}
	}
	return m.Run(), nil
}

// OpenStore opens the database at url with the product's store, closed when
// the test ends. Unless at is zero, its connections see PostgreSQL's lock
// clock (lock_clock()) pinned at at, so lock ages are set by the test.
func OpenStore(t testing.TB, url string, at time.Time) *store.Store {
	t.Helper()
	if !at.IsZero() {
		var err error
		if url, err = localenv.WithLockClock(url, at); err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
