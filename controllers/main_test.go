package controllers_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/localenv"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// The reconciler is tested by calling Reconcile directly (no manager, no
// watches: each step is one call) against a real API server (envtest),
// PostgreSQL and versitygw, with a fake clock for expiry and retention and a
// fixed PostgreSQL clock for lock ages. Nothing waits for time to pass.
var (
	k8s    client.WithWatch
	scheme = runtime.NewScheme()
	dbURL  string
	db     *store.Store
	s3srv  *localenv.S3
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		ctx := context.Background()
		// envtest and the manager log through controller-runtime; with no
		// logger set it would print a warning and a stack trace instead.
		ctrllog.SetLogger(logr.Discard())
		fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
		if err := clientgoscheme.AddToScheme(scheme); err != nil {
			return fail(err)
		}
		if err := uploadsv1.AddToScheme(scheme); err != nil {
			return fail(err)
		}
		kube, err := localenv.StartKube(ctx)
		if err != nil {
			return fail(err)
		}
		defer func() { _ = kube.Stop() }()
		if k8s, err = client.NewWithWatch(kube.Config, client.Options{Scheme: scheme}); err != nil {
			return fail(err)
		}
		var drop func()
		if dbURL, drop, err = localenv.CreateDatabase(ctx, localenv.RandomName("mocupload_controllers"), false); err != nil {
			return fail(err)
		}
		defer drop()
		if db, err = store.Open(ctx, dbURL); err != nil {
			return fail(err)
		}
		defer db.Close()
		dir, err := os.MkdirTemp("", "controllers-s3-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
		if s3srv, err = localenv.StartS3(ctx, localenv.S3Options{Dir: dir, Bucket: "mocs"}); err != nil {
			return fail(err)
		}
		defer s3srv.Stop()
		return m.Run()
	}())
}

// storeWithLockClock is the database seen through a PostgreSQL clock fixed at
// at: lock ages are measured against it.
func storeWithLockClock(t *testing.T, at time.Time) *store.Store {
	t.Helper()
	u, err := localenv.WithLockClock(dbURL, at)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// recorder is the events package's fake recorder with the annotated form the
// reconciler's recorder interface also asks for.
type recorder struct{ *events.FakeRecorder }

func (r recorder) AnnotatedEventf(regarding, related runtime.Object, _ map[string]string, eventtype, reason, action, note string, args ...any) {
	r.Eventf(regarding, related, eventtype, reason, action, note, args...)
}
