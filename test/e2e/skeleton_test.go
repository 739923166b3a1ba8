package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/session"
)

// The sample manifest becomes an Active session: a row in upload_sessions, one
// S3 multipart upload per file, status and printer columns a person can read;
// deleting it aborts the uploads and removes the rows.
func TestSampleManifestBecomesActive(t *testing.T) {
	ctx := context.Background()
	mustKubectl(t, "apply", "-k", "config/samples")
	us := waitPhase(t, "default", "castle-moc", uploadsv1.PhaseActive)

	id, err := uuid.Parse(us.Status.SessionID)
	if err != nil {
		t.Fatalf("status.sessionId %q: %v", us.Status.SessionID, err)
	}
	if got := us.Labels[uploadsv1.SessionIDLabel]; got != id.String() {
		t.Errorf("label %s = %q, want %s", uploadsv1.SessionIDLabel, got, id)
	}
	if us.Status.FileCount != 2 || len(us.Status.Files) != 2 {
		t.Fatalf("status files = %d/%v, want 2", us.Status.FileCount, us.Status.Files)
	}
	if f := us.Status.Files[0]; f.Name != "castle-instructions.pdf" || f.PartCount != 8 || f.FileID == "" {
		t.Errorf("file 0 status = %+v, want castle-instructions.pdf with 8 parts of 5 MiB", f)
	}
	if f := us.Status.Files[1]; f.PartCount != 1 {
		t.Errorf("file 1 status = %+v, want 1 part", f)
	}
	cond := meta.FindStatusCondition(us.Status.Conditions, uploadsv1.ConditionUploadsReady)
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != us.Generation {
		t.Errorf("UploadsReady condition = %+v, want True at generation %d", cond, us.Generation)
	}
	if us.Status.ExpiresAt == nil || time.Until(us.Status.ExpiresAt.Time) < 50*time.Minute {
		t.Errorf("expiresAt = %v, want about an hour from now", us.Status.ExpiresAt)
	}

	// PostgreSQL: the session row and one file row per file, each with its upload id.
	var status, owner string
	var partSize int64
	if err := db.QueryRow(ctx, `SELECT status, user_id, part_size_bytes FROM upload_sessions WHERE id = $1`, id).
		Scan(&status, &owner, &partSize); err != nil {
		t.Fatalf("upload_sessions row: %v", err)
	}
	if status != "active" || owner != "system:serviceaccount:default:dev-user" || partSize != 5*session.MiB {
		t.Errorf("upload_sessions = (%s, %s, %d)", status, owner, partSize)
	}
	recorded := map[string]string{}
	rows, err := db.Query(ctx, `SELECT s3_key, coalesce(s3_upload_id, '') FROM upload_files WHERE session_id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var key, up string
		if err := rows.Scan(&key, &up); err != nil {
			t.Fatal(err)
		}
		recorded[key] = up
	}
	if len(recorded) != 2 {
		t.Fatalf("upload_files rows = %v, want 2", recorded)
	}

	// S3: exactly the recorded multipart uploads exist.
	s3 := stack.S3.Client()
	ups, err := s3.ListMultipartUploads(ctx, session.SessionPrefix(id))
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 2 {
		t.Fatalf("S3 multipart uploads under the session = %v, want 2", ups)
	}
	for _, u := range ups {
		if recorded[u.Key] != u.UploadID {
			t.Errorf("S3 upload %s/%s is not the recorded one (%q)", u.Key, u.UploadID, recorded[u.Key])
		}
	}

	// kubectl get shows the printer columns.
	out := mustKubectl(t, "get", "uploadsessions", "-n", "default")
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	want := []string{"NAME", "OWNER", "PHASE", "FILES", "PROGRESS", "MOC", "AGE"}
	if strings.Join(header, " ") != strings.Join(want, " ") {
		t.Errorf("kubectl get header = %v, want %v\n%s", header, want, out)
	}
	if !strings.Contains(out, "castle-moc") || !strings.Contains(out, "Active") || !strings.Contains(out, "0/9 parts") {
		t.Errorf("kubectl get row lacks name, phase or progress:\n%s", out)
	}
	wide := mustKubectl(t, "get", "us", "-n", "default", "-o", "wide")
	if !strings.Contains(wide, "SESSION") || !strings.Contains(wide, id.String()) {
		t.Errorf("kubectl get -o wide lacks the session id:\n%s", wide)
	}

	// An Event tells the story.
	waitEvent(t, "default", "castle-moc", uploadsv1.ReasonUploadsCreated)

	// Delete: uploads aborted, rows gone, object released.
	mustKubectl(t, "delete", "-k", "config/samples", "--wait=true", "--timeout=60s")
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: "castle-moc"}, &uploadsv1.UploadSession{}); !apierrors.IsNotFound(err) {
		t.Errorf("after delete: get = %v, want NotFound", err)
	}
	if ups, err := s3.ListMultipartUploads(ctx, session.SessionPrefix(id)); err != nil || len(ups) != 0 {
		t.Errorf("after delete: S3 multipart uploads = %v (%v), want none", ups, err)
	}
	var n int
	must(t, db.QueryRow(ctx, `SELECT count(*) FROM upload_sessions WHERE id = $1`, id).Scan(&n))
	if n != 0 {
		t.Errorf("after delete: upload_sessions rows = %d, want 0", n)
	}
}

// kubectl explain documents the fields a user writes.
func TestKubectlExplain(t *testing.T) {
	out := mustKubectl(t, "explain", "uploadsession.spec")
	for _, want := range []string{"owner", "files", "partSizeBytes", "finalize", "TokenReview", "10,000 parts"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain uploadsession.spec lacks %q:\n%s", want, out)
		}
	}
	out = mustKubectl(t, "explain", "uploadsession.status.conditions")
	if !strings.Contains(out, "SlugConflict") {
		t.Errorf("status.conditions doc:\n%s", out)
	}
}

// The API server enforces the schema: bad specs never reach the reconciler.
func TestCRDValidation(t *testing.T) {
	cases := []struct {
		name, spec, wantErr string
	}{
		{"no files", `{"owner":"u","files":[]}`, "spec.files"},
		{"zero size", `{"owner":"u","files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":0}]}`, "sizeBytes"},
		{"part too small", `{"owner":"u","partSizeBytes":1024,"files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":10}]}`, "partSizeBytes"},
		{"no owner", `{"files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":10}]}`, "owner"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			manifest := `{"apiVersion":"uploads.mocs.dev/v1alpha1","kind":"UploadSession","metadata":{"name":"invalid-` +
				string(rune('a'+i)) + `","namespace":"default"},"spec":` + tc.spec + `}`
			out, err := kubectlStdin(t, manifest, "create", "-f", "-")
			if err == nil {
				t.Fatalf("created an invalid session: %s", out)
			}
			if !strings.Contains(out, tc.wantErr) {
				t.Errorf("error %q does not name %s", out, tc.wantErr)
			}
		})
	}
}

// A spec the schema allows but the operator refuses (a content type not on the
// allowlist) ends Failed with the reason in a condition, and files are immutable.
func TestInvalidSpecFailsWithReason(t *testing.T) {
	ctx := context.Background()
	name := "bad-type-" + uuid.NewString()[:8]
	us := &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: uploadsv1.UploadSessionSpec{Owner: "someone", Files: []uploadsv1.FileSpec{
			{Name: "virus.exe", ContentType: "application/x-msdownload", SizeBytes: 10},
		}},
	}
	if err := k8s.Create(ctx, us); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), us) })
	got := waitPhase(t, "default", name, uploadsv1.PhaseFailed)
	cond := meta.FindStatusCondition(got.Status.Conditions, uploadsv1.ConditionUploadsReady)
	if cond == nil || cond.Reason != uploadsv1.ReasonInvalidSpec || !strings.Contains(cond.Message, "contentType") {
		t.Errorf("condition = %+v, want InvalidSpec naming contentType", cond)
	}

	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"files":[{"name":"b.pdf","contentType":"application/pdf","sizeBytes":5}]}}`))
	if err := k8s.Patch(ctx, got, patch); err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("changing files: err = %v, want immutable", err)
	}
}

// The deploy manifests build with kustomize and the API server accepts every
// object (server-side dry run): Deployment with probes, security context and
// limits, PDB, Services, NetworkPolicy, RBAC generated from the markers.
func TestDeployManifestsDryRun(t *testing.T) {
	out := mustKubectl(t, "kustomize", "config/default")
	for _, want := range []string{"kind: Deployment", "kind: PodDisruptionBudget", "kind: NetworkPolicy", "readOnlyRootFilesystem: true",
		"runAsNonRoot: true", "GOMEMLIMIT", "tokenreviews", "leases", "replicas: 2", "emptyDir"} {
		if !strings.Contains(out, want) {
			t.Errorf("kustomize output lacks %q", want)
		}
	}
	// A dry run of namespaced objects needs their namespace to exist.
	if o, err := kubectl(t, "create", "namespace", "upload-operator-system"); err != nil && !strings.Contains(o, "AlreadyExists") {
		t.Fatal(o)
	}
	res, err := kubectlStdin(t, out, "apply", "--server-side", "--dry-run=server", "--field-manager=dry-run-test", "--force-conflicts", "-f", "-")
	if err != nil {
		t.Fatalf("server-side dry run: %v\n%s", err, res)
	}
	for _, want := range []string{"deployment.apps/upload-operator-controller-manager serverside-applied (server dry run)",
		"poddisruptionbudget.policy/upload-operator-controller-manager", "networkpolicy.networking.k8s.io/upload-operator-controller-manager",
		"clusterrole.rbac.authorization.k8s.io/upload-operator-manager-role"} {
		if !strings.Contains(res, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, res)
		}
	}
	// Rendered only: envtest has no Prometheus Operator CRDs to dry-run against.
	if pm, err := kubectl(t, "kustomize", "config/prometheus"); err != nil || !strings.Contains(pm, "kind: ServiceMonitor") ||
		!strings.Contains(pm, "kind: PrometheusRule") {
		t.Errorf("config/prometheus: %v %s", err, pm)
	}
}
