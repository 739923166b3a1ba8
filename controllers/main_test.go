package controllers_test

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/testenv"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
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
	testenv.Main(m, testenv.Needs{Kube: true, Database: "mocupload_controllers", OpenStore: true, S3: true, NoLeakCheck: true},
		func(e *testenv.Env) (err error) {
			dbURL, db, s3srv = e.DatabaseURL, e.Store, e.S3
			if err := clientgoscheme.AddToScheme(scheme); err != nil {
				return err
			}
			if err := uploadsv1.AddToScheme(scheme); err != nil {
				return err
			}
			k8s, err = client.NewWithWatch(e.Kube.Config, client.Options{Scheme: scheme})
			return err
		})
}

// recorder is the events package's fake recorder with the annotated form the
// reconciler's recorder interface also asks for.
type recorder struct{ *events.FakeRecorder }

func (r recorder) AnnotatedEventf(regarding, related runtime.Object, _ map[string]string, eventtype, reason, action, note string, args ...any) {
	r.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

// mustExec runs SQL on the test database; an error fails the test.
func mustExec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}
