package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"k8s.io/utils/ptr"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

// The declarative flow: a session created by manifest, parts sent over HTTP,
// finalize requested in the spec. While parts are missing, or the title's slug
// is taken, the session stays Active and a condition says why; once fixed, it
// reaches Finalized.
func TestDeclarativeFinalize(t *testing.T) {
	ctx := context.Background()
	acct := user(t)
	taken := uniqueTitle("Declared Castle")
	name := "declared-" + uuid.NewString()[:8]
	finalized(t, acct, taken, fileReq{"x.pdf", pdf, 10})

	us := &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: uploadsv1.UploadSessionSpec{Owner: acct.name, PartSizeBytes: ptr.To(int64(5 << 20)), Files: []uploadsv1.FileSpec{
			{Name: "declared.pdf", ContentType: pdf, SizeBytes: 7 << 20},
		}, Finalize: &uploadsv1.FinalizeSpec{Title: taken, Description: "by manifest"}},
	}
	if err := k8s.Create(ctx, us); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, name, uploadsv1.ReasonIncompleteUpload)

	got := waitPhase(t, "default", name, uploadsv1.PhaseActive)
	if got.Spec.Transfer != uploadsv1.TransferProxy {
		t.Fatalf("spec.transfer defaults to %q, want proxy", got.Spec.Transfer)
	}
	u := &upload{id: got.Status.SessionID, partSize: got.Status.PartSizeBytes, token: acct.token,
		files: []uploadFile{{id: got.Status.Files[0].FileID, data: randomBytes(7 << 20), partCount: 2}}}
	u.putAll(t, "")

	c := waitCondition(t, name, uploadsv1.ReasonSlugConflict)
	must(t, k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, got))
	slug := strings.ToLower(strings.ReplaceAll(taken, " ", "-"))
	if got.Status.SuggestedSlug != slug+"-1" || got.Status.Phase != uploadsv1.PhaseActive || !strings.Contains(c.Message, slug) {
		t.Fatalf("after conflict: phase %s, suggestedSlug %q, condition %+v", got.Status.Phase, got.Status.SuggestedSlug, c)
	}

	patch := fmt.Sprintf(`{"spec":{"finalize":{"title":%q}}}`, taken+" (1)")
	if err := k8s.Patch(ctx, got, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	fin := waitPhase(t, "default", name, uploadsv1.PhaseFinalized)
	if fin.Status.Slug != slug+"-1" || fin.Status.SuggestedSlug != "" {
		t.Fatalf("status = %+v", fin.Status)
	}
	out := mustKubectl(t, "describe", "us", name, "-n", "default")
	for _, reason := range []string{"UploadsCreated", "IncompleteUpload", "SlugConflict", "FinalizeSucceeded"} {
		if !strings.Contains(out, reason) {
			t.Errorf("kubectl describe lacks the %s event:\n%s", reason, out)
		}
	}
	// The HTTP replay agrees with the declarative result.
	if r := u.finalize(t, "", "whatever"); r.status != 200 || r.str("slug") != slug+"-1" {
		t.Errorf("replay: %d %s", r.status, r.raw)
	}
}

func waitCondition(t *testing.T, name, reason string) *metav1.Condition {
	t.Helper()
	var c *metav1.Condition
	waitFor(t, 30*time.Second, name+" condition "+reason, func() (bool, string) {
		us := &uploadsv1.UploadSession{}
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: name}, us); err != nil {
			return false, err.Error()
		}
		c = meta.FindStatusCondition(us.Status.Conditions, uploadsv1.ConditionFinalized)
		return c != nil && c.Reason == reason, fmt.Sprintf("%+v", c)
	})
	return c
}

// A replica killed with SIGKILL after S3 completed every upload but before
// the commit: a restarted process's later finalize converges to exactly one
// MOC; and one killed after the commit, before it reported: the reconciler
// brings the resource to Finalized from PostgreSQL.
func TestFinalizeSurvivesSIGKILL(t *testing.T) {
	for _, point := range []string{"finalize/after-all-complete", "finalize/after-s3-complete", "finalize/after-commit"} {
		t.Run(strings.TrimPrefix(point, "finalize/"), func(t *testing.T) {
			ctx := context.Background()
			acct := user(t)
			crashy := startReplica(t, map[string]string{"MOCUPLOAD_FAILPOINTS": point + "=kill", "STALE_LOCK_AFTER": "2s",
				"WATCH_NAMESPACE": "no-such-namespace"})
			u := createUpload(t, acct, fileReq{"kill.pdf", pdf, 11 << 20}, fileReq{"kill.png", png, 1000})
			u.putAll(t, crashy.url)
			title := uniqueTitle("Killed Castle")

			req, _ := http.NewRequest("POST", crashy.url+"/api/mocs/uploads/finalize",
				strings.NewReader(fmt.Sprintf(`{"uploadSessionId":%q,"title":%q}`, u.id, title)))
			req.Header.Set("Authorization", "Bearer "+acct.token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				t.Fatalf("the replica answered %d; it should have died at %s", resp.StatusCode, point)
			}
			select {
			case <-crashy.proc.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the replica did not die")
			}

			// Restart the same replica without the failpoint; finalize again
			// until the dead process's lock is stale (or the reconciler has
			// finished it, and this is the replay).
			again := startReplica(t, map[string]string{"STALE_LOCK_AFTER": "2s", "WATCH_NAMESPACE": "no-such-namespace"})
			var last response
			waitFor(t, 30*time.Second, "finalize to converge", func() (bool, string) {
				last = u.finalize(t, again.url, title)
				return last.status == 201 || last.status == 200, fmt.Sprintf("%d %s", last.status, last.raw)
			})
			var n, files int
			must(t, db.QueryRow(ctx, `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, u.id).Scan(&n))
			must(t, db.QueryRow(ctx, `SELECT count(*) FROM moc_files f JOIN moc_instructions m ON m.id = f.moc_id WHERE m.upload_session_id = $1`, u.id).Scan(&files))
			if n != 1 || files != 2 {
				t.Fatalf("%d MOCs with %d files, want exactly 1 with 2", n, files)
			}
			waitPhase(t, "default", u.id, uploadsv1.PhaseFinalized)
			noMultipartUploads(t, "sessions/"+u.id+"/")
		})
	}
}

// The reconciler alone finishes a finalize whose replica died holding the lock.
func TestReconcilerTakesOverAStaleLock(t *testing.T) {
	acct := user(t)
	crashy := startReplica(t, map[string]string{"MOCUPLOAD_FAILPOINTS": "finalize/after-file-complete=kill",
		"WATCH_NAMESPACE": "no-such-namespace"})
	u := createUpload(t, acct, fileReq{"a.pdf", pdf, 6 << 20}, fileReq{"b.pdf", pdf, 6 << 20})
	u.putAll(t, "")
	title := uniqueTitle("Orphaned Castle")
	req, _ := http.NewRequest("POST", crashy.url+"/api/mocs/uploads/finalize",
		strings.NewReader(fmt.Sprintf(`{"uploadSessionId":%q,"title":%q}`, u.id, title)))
	req.Header.Set("Authorization", "Bearer "+acct.token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("replica answered %d", resp.StatusCode)
	}
	fin := waitPhase(t, "default", u.id, uploadsv1.PhaseFinalized)
	if fin.Status.Slug != strings.ToLower(strings.ReplaceAll(title, " ", "-")) {
		t.Fatalf("slug %q: the stored title was not used", fin.Status.Slug)
	}
}

type replica struct {
	url     string
	proc    *localenv.Process
	log     string // its JSON log file
	metrics string // its /metrics
	probes  string // its probe server, e.g. probes+"/readyz"
}

// startReplica runs another manager process on the same services.
func startReplica(t *testing.T, extra map[string]string) replica {
	t.Helper()
	return startReplicaWith(t, extra, "http", http.DefaultClient)
}

// startReplicaWith starts a replica whose upload API is scheme (https when
// extra sets TLS_CERT_FILE), waiting for it with client.
func startReplicaWith(t *testing.T, extra map[string]string, scheme string, client *http.Client) replica {
	t.Helper()
	addr, err := localenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	env := stack.ManagerEnv(addr)
	env["ADMIN_GROUPS"] = "system:serviceaccounts:" + adminNamespace
	liftLimits(env)
	// Replicas of one Deployment share the window, so the locks a replica
	// holds are renewed well before the suite's manager would take them over.
	env["STALE_LOCK_AFTER"] = suiteStaleLockAfter
	maddr, err := localenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	env["METRICS_ADDR"] = maddr
	paddr, err := localenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	env["PROBE_ADDR"] = paddr
	for k, v := range extra {
		env[k] = v
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "replica.log"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := localenv.StartProcess(managerBin, env, logf)
	if err != nil {
		t.Fatal(err)
	}
	// A replica must exit cleanly when stopped (or have died where a
	// failpoint killed it) and log no panic.
	killable := strings.Contains(env["MOCUPLOAD_FAILPOINTS"], "=kill")
	t.Cleanup(func() {
		var diedFirst bool
		select {
		case <-p.Done():
			diedFirst = true
		default:
		}
		err := p.Stop(10 * time.Second)
		_ = logf.Close()
		b, rerr := os.ReadFile(logf.Name())
		switch {
		case err != nil && !killable:
			t.Errorf("replica exited with %v", err)
		case killable && diedFirst && (err == nil || err.Error() != "signal: killed"):
			// Armed to be killed at a failpoint: it must have died of that
			// SIGKILL, not of something else on the way.
			t.Errorf("replica armed to be killed (%s) ended with %v", env["MOCUPLOAD_FAILPOINTS"], err)
		case rerr != nil:
			t.Errorf("replica log: %v", rerr)
		case badOutput(b) != "":
			t.Errorf("replica output has %s", badOutput(b))
		}
		if t.Failed() {
			t.Logf("replica log:\n%s", tail(b, 4000))
		}
	})
	if err := p.WaitHTTPWith(context.Background(), client, scheme+"://"+addr+"/healthz", time.Minute); err != nil {
		t.Fatal(err)
	}
	return replica{url: scheme + "://" + addr, proc: p, log: logf.Name(), metrics: "https://" + maddr + "/metrics", probes: "http://" + paddr}
}
