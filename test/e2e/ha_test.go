package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

const leaseName = "upload-operator.uploads.mocs.dev"

func leaseHolder(t *testing.T, ns string) string {
	t.Helper()
	var l coordv1.Lease
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: leaseName}, &l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// Two replicas with leader election share one API server, database, Redis and
// S3. Parts of one session go to both; the leader is SIGKILLed while it
// finalizes (every S3 upload completed, nothing committed). The other replica
// takes the lease and, once the lock is stale, finishes the finalize: exactly
// one MOC, every part intact, the resource Finalized.
func TestTwoReplicasSurviveTheLeaderDyingMidFinalize(t *testing.T) {
	for i, point := range []string{"finalize/after-s3-complete", "finalize/after-all-complete", "finalize/after-commit"} {
		t.Run(strings.TrimPrefix(point, "finalize/"), func(t *testing.T) { leaderDies(t, fmt.Sprintf("ha-%d", i), point) })
	}
}

func leaderDies(t *testing.T, ns, point string) {
	ctx := context.Background()
	acct := user(t)
	serviceAccount(t, ns, "unused")
	common := map[string]string{"LEADER_ELECTION": "true", "LEADER_ELECTION_NAMESPACE": ns, "LEASE_DURATION": "3s",
		"WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns, "STALE_LOCK_AFTER": "2s", "RESYNC_INTERVAL": "1s"}
	envA := map[string]string{"MOCUPLOAD_FAILPOINTS": point + "=kill"}
	for k, v := range common {
		envA[k] = v
	}
	a := startReplica(t, envA)
	waitFor(t, 30*time.Second, "replica A to lead", func() (bool, string) { return leaseHolder(t, ns) != "", "" })
	leaderA := leaseHolder(t, ns)
	b := startReplica(t, common)

	r := call(t, a.url, "POST", "/api/mocs/uploads/sessions", acct.token,
		strings.NewReader(`{"files":[{"name":"ha.pdf","contentType":"application/pdf","sizeBytes":20971520}],"partSizeBytes":5242880}`))
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	u := &upload{id: r.str("sessionId"), partSize: 5 << 20, token: acct.token,
		files: []uploadFile{{id: r.body["files"].([]any)[0].(map[string]any)["fileId"].(string), data: randomBytes(20 << 20), partCount: 4}}}
	for n := 1; n <= 4; n++ { // parts spread over both replicas
		base := a.url
		if n%2 == 0 {
			base = b.url
		}
		if p := u.put(t, base, 0, n); p.status != 200 {
			t.Fatalf("part %d via %s: %d %s", n, base, p.status, p.raw)
		}
	}
	title := uniqueTitle("HA Castle")
	req, _ := http.NewRequest("POST", a.url+"/api/mocs/uploads/finalize", strings.NewReader(fmt.Sprintf(`{"uploadSessionId":%q,"title":%q}`, u.id, title)))
	req.Header.Set("Authorization", "Bearer "+acct.token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the leader answered %d; it should have died", resp.StatusCode)
	}
	if err := a.proc.Wait(30 * time.Second); err == nil || err.Error() != "signal: killed" {
		t.Fatalf("the leader ended with %v; want killed by SIGKILL at %s", err, point)
	}

	waitFor(t, 60*time.Second, "replica B to take the lease", func() (bool, string) {
		h := leaseHolder(t, ns)
		return h != "" && h != leaderA, h
	})
	fin := waitPhase(t, ns, u.id, uploadsv1.PhaseFinalized)
	var mocs int
	var key string
	must(t, db.QueryRow(ctx, `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, u.id).Scan(&mocs))
	must(t, db.QueryRow(ctx, `SELECT f.s3_key FROM moc_files f JOIN moc_instructions m ON m.id = f.moc_id WHERE m.upload_session_id = $1`, u.id).Scan(&key))
	if mocs != 1 || fin.Status.Slug != strings.ToLower(strings.ReplaceAll(title, " ", "-")) {
		t.Fatalf("%d MOCs, slug %q", mocs, fin.Status.Slug)
	}
	// Every part intact: the object's bytes are the bytes sent, part by part
	// (each part random, so a part lost, swapped or duplicated shows).
	rc, err := stack.S3.Client().GetObject(ctx, key)
	must(t, err)
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	must(t, err)
	if !bytes.Equal(got, u.files[0].data) {
		t.Fatalf("the MOC's object (%d bytes) is not the %d bytes sent", len(got), len(u.files[0].data))
	}
	// Clean up while a replica still runs the finalizer.
	if err := k8s.Delete(ctx, fin); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the resource to go", func() (bool, string) {
		var l uploadsv1.UploadSessionList
		if err := k8s.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		return len(l.Items) == 0, fmt.Sprint(len(l.Items))
	})
}
