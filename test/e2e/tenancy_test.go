package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

func manifestSession(ns, name, owner string, labels map[string]string) *uploadsv1.UploadSession {
	return &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: uploadsv1.UploadSessionSpec{Owner: owner, PartSizeBytes: ptr.To(int64(5 << 20)),
			Files: []uploadsv1.FileSpec{{Name: "victim.pdf", ContentType: pdf, SizeBytes: 6 << 20}}},
	}
}

func waitReason(t *testing.T, ns, name, reason string) *uploadsv1.UploadSession {
	t.Helper()
	us := &uploadsv1.UploadSession{}
	waitFor(t, 30*time.Second, name+" to fail with "+reason, func() (bool, string) {
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, us); err != nil {
			return false, err.Error()
		}
		c := findCond(us, uploadsv1.ConditionUploadsReady)
		return us.Status.Phase == uploadsv1.PhaseFailed && c != nil && c.Reason == reason, fmt.Sprintf("%s %+v", us.Status.Phase, c)
	})
	return us
}

// A resource whose session-id label is copied from someone else's session, in
// another namespace, fails with SessionIDTaken and touches nothing: deleting it
// leaves the victim's session (rows, uploads, parts) as it was. A resource
// that relabels itself to the victim's id after it was activated, and asks to
// finalize, stays on its own session: the label is put back.
func TestCopiedSessionIDLabelTouchesNothing(t *testing.T) {
	t.Parallel() // its own namespace, watched by its own replica
	ctx := context.Background()
	victimNS, attackerNS := namespace(t, "victim"), namespace(t, "attacker")
	startReplica(t, map[string]string{"WATCH_NAMESPACE": victimNS + "," + attackerNS, "SESSION_NAMESPACE": victimNS})
	deleteSessionsAtEnd(t, victimNS)
	deleteSessionsAtEnd(t, attackerNS)
	victim, attacker := user(t), other(t)

	if err := k8s.Create(ctx, manifestSession(victimNS, "castle", victim.name, nil)); err != nil {
		t.Fatal(err)
	}
	v := waitPhase(t, victimNS, "castle", uploadsv1.PhaseActive)
	u := &upload{id: v.Status.SessionID, partSize: v.Status.PartSizeBytes, token: victim.token,
		files: []uploadFile{{id: v.Status.Files[0].FileID, data: randomBytes(6 << 20), partCount: 2}}}
	if r := u.put(t, "", 0, 1); r.status != 200 {
		t.Fatalf("victim's part: %d %s", r.status, r.raw)
	}

	for _, owner := range []string{attacker.name, victim.name} {
		name := "thief-" + map[bool]string{true: "same-owner", false: "other-owner"}[owner == victim.name]
		thief := manifestSession(attackerNS, name, owner, map[string]string{uploadsv1.SessionIDLabel: u.id})
		if err := k8s.Create(ctx, thief); err != nil {
			t.Fatal(err)
		}
		waitReason(t, attackerNS, name, uploadsv1.ReasonSessionIDTaken)
		if err := k8s.Delete(ctx, thief); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, name+" to go", func() (bool, string) {
			err := k8s.Get(ctx, client.ObjectKeyFromObject(thief), &uploadsv1.UploadSession{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	}

	// Relabelled after activation, with a finalize request: the resource
	// stays on its own session (the label is put back) and its finalize
	// waits for its own missing parts.
	if err := k8s.Create(ctx, manifestSession(attackerNS, "turncoat", attacker.name, nil)); err != nil {
		t.Fatal(err)
	}
	tc := waitPhase(t, attackerNS, "turncoat", uploadsv1.PhaseActive)
	own := tc.Status.SessionID
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}},"spec":{"finalize":{"title":"Stolen"}}}`, uploadsv1.SessionIDLabel, u.id)
	if err := k8s.Patch(ctx, tc, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the turncoat's label to be put back and its own finalize to wait for parts", func() (bool, string) {
		cur := &uploadsv1.UploadSession{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(tc), cur); err != nil {
			return false, err.Error()
		}
		c := findCond(cur, uploadsv1.ConditionFinalized)
		return cur.Labels[uploadsv1.SessionIDLabel] == own && c != nil && c.Reason == uploadsv1.ReasonIncompleteUpload,
			fmt.Sprintf("label %s, %+v", cur.Labels[uploadsv1.SessionIDLabel], c)
	})

	// The victim's session is untouched: active, its upload open, its part there.
	if s := sessionStatus(t, u.id); s != "active" {
		t.Fatalf("victim's session is %s", s)
	}
	ups, err := stack.S3.Client().ListMultipartUploads(ctx, "sessions/"+u.id+"/")
	if err != nil || len(ups) != 1 {
		t.Fatalf("victim's uploads: %v, %v", ups, err)
	}
	if g := call(t, "", "GET", "/api/mocs/uploads/sessions/"+u.id, victim.token, nil); g.status != 200 ||
		len(g.body["files"].([]any)[0].(map[string]any)["parts"].([]any)) != 1 {
		t.Fatalf("victim's session: %d %s", g.status, g.raw)
	}
	if r := u.put(t, "", 0, 2); r.status != 200 {
		t.Fatalf("victim's last part: %d %s", r.status, r.raw)
	}
	if r := u.finalize(t, "", uniqueTitle("Victim Castle")); r.status != 201 {
		t.Fatalf("victim's finalize: %d %s", r.status, r.raw)
	}
}

// Expired resources hold nothing and are removed after EXPIRED_RETENTION
// (minutes, not the week finalized ones stay), rows and all, so sessions left
// to expire cannot pile up in etcd.
func TestExpiredResourcesAreRemovedPromptly(t *testing.T) {
	t.Parallel() // its own namespace, watched by its own replica
	ctx := context.Background()
	ns := namespace(t, "expiring")
	startReplica(t, map[string]string{"WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns, "SESSION_TTL": "2s", "EXPIRED_RETENTION": "1s"})
	deleteSessionsAtEnd(t, ns)
	if err := k8s.Create(ctx, manifestSession(ns, "forgotten", user(t).name, nil)); err != nil {
		t.Fatal(err)
	}
	id := waitPhase(t, ns, "forgotten", uploadsv1.PhaseActive).Status.SessionID
	waitFor(t, 30*time.Second, "the session to expire and its resource to be removed", func() (bool, string) {
		err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "forgotten"}, &uploadsv1.UploadSession{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	var rows int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM upload_sessions WHERE id = $1`, id).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("rows left: %d, %v", rows, err)
	}
}

// Creating a session in someone else's name needs `assign` on
// uploadsessions/owner, granted cluster-wide: the admission policy shipped in
// config/admission refuses spec.owner other than the requesting user, on the
// real API server. A tenant's Role with verbs ["*"] on uploadsessions, or
// even "*" on "*" in its namespace, does not grant it (before, the policy
// checked a custom verb on uploadsessions itself, which "*" grants).
func TestOwnerMustBeTheCreator(t *testing.T) {
	t.Parallel() // its own namespace, watched by its own replica
	ctx := context.Background()
	if out, err := kubectl(t, "apply", "--server-side", "--field-manager=admission-test", "--force-conflicts", "-k", "config/admission"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ns := namespace(t, "owners")
	uploadsessions := []string{"uploadsessions"}
	grantIn(t, ns, "session-creator", uploadsessions, []string{"create", "get"}, "alice", "carol")
	grantIn(t, ns, "wildcard-verbs", uploadsessions, []string{"*"}, "dave")
	grantIn(t, ns, "namespace-admin", []string{"*"}, []string{"*"}, "erin")
	// carol may assign owners: a ClusterRole bound cluster-wide.
	assigner := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-owner-assigner"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"uploads.mocs.dev"}, Resources: []string{"uploadsessions/owner"}, Verbs: []string{"assign"}}}}
	assignerBinding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-owner-assigner"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: assigner.Name},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "carol"}}}
	for _, o := range []client.Object{assigner, assignerBinding} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), o) })
	}
	as := func(user string) client.Client {
		cfg := rest.CopyConfig(stack.Kube.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
		c, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	n := 0
	create := func(c client.Client, owner string) error {
		n++
		return c.Create(ctx, manifestSession(ns, fmt.Sprintf("s-%d", n), owner, nil))
	}
	// The policy takes effect a moment after it is created.
	waitFor(t, 30*time.Second, "the owner policy to refuse alice creating bob's session", func() (bool, string) {
		err := create(as("alice"), "bob")
		return apierrors.IsForbidden(err) || apierrors.IsInvalid(err), fmt.Sprint(err)
	})
	for _, who := range []string{"alice", "dave", "erin"} {
		err := create(as(who), "bob")
		if err == nil || !strings.Contains(err.Error(), "spec.owner must be you ("+who+")") {
			t.Fatalf("%s creating a session owned by bob: %v", who, err)
		}
		if err := create(as(who), who); err != nil {
			t.Fatalf("%s creating their own session: %v", who, err)
		}
	}
	// The assigner's cluster-wide grant takes effect like any RBAC change.
	waitFor(t, 30*time.Second, "carol, who may assign owners, creating bob's session", func() (bool, string) {
		err := create(as("carol"), "bob")
		return err == nil, fmt.Sprint(err)
	})
}

// grantIn binds a Role on resources of uploads.mocs.dev (or every group, for
// resources "*") with verbs to users in ns.
func grantIn(t *testing.T, ns, name string, resources, verbs []string, users ...string) {
	t.Helper()
	groups := []string{"uploads.mocs.dev"}
	if resources[0] == "*" {
		groups = []string{"*"}
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: groups, Resources: resources, Verbs: verbs}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name}}
	for _, u := range users {
		binding.Subjects = append(binding.Subjects, rbacv1.Subject{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: u})
	}
	for _, o := range []client.Object{role, binding} {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
}

// Tokens are accepted for the upload API's audience only: a plain
// ServiceAccount token, which the Kubernetes API also accepts and so could be
// replayed there, is refused (401). AUTH_AUDIENCES= (empty), for a migration,
// accepts plain tokens (and then refuses the audience-bound ones).
func TestTokensMustBeBoundToTheUploadAudience(t *testing.T) {
	bound, plain := user(t), serviceAccountFor(t, "default", "dev-user", "")
	migrating := startReplica(t, map[string]string{"AUTH_AUDIENCES": "", "WATCH_NAMESPACE": "no-such-namespace"})
	path := "/api/mocs/uploads/sessions/" + "00000000-0000-0000-0000-000000000000"
	for _, tc := range []struct {
		name, base, token string
		status            int
	}{
		{"bound token, default audiences", "", bound.token, 404},
		{"plain token, default audiences", "", plain.token, 401},
		{"plain token while migrating", migrating.url, plain.token, 404},
		{"bound token while migrating", migrating.url, bound.token, 401},
	} {
		if r := call(t, tc.base, "GET", path, tc.token, nil); r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.raw, tc.status)
		}
	}
}

// The reconciler logs a session's correlation id from an annotation that
// anyone who may edit the resource can write: one that is not a well-formed id
// (here, an attempt to forge a log line) is not used; the session id is.
func TestCorrelationAnnotationIsChecked(t *testing.T) {
	t.Parallel() // its own namespace, watched by its own replica
	ctx := context.Background()
	ns := namespace(t, "corr")
	rep := startReplica(t, map[string]string{"WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns})
	deleteSessionsAtEnd(t, ns)
	us := manifestSession(ns, "annotated", user(t).name, nil)
	us.Annotations = map[string]string{uploadsv1.CorrelationIDAnnotation: "evil\n{\"level\":\"error\",\"msg\":\"forged\"}"}
	if err := k8s.Create(ctx, us); err != nil {
		t.Fatal(err)
	}
	id := waitPhase(t, ns, "annotated", uploadsv1.PhaseActive).Status.SessionID
	lines := linesWhere(readLogs(t, rep.log), "sessionId", id)
	if len(lines) == 0 {
		t.Fatal("no log line for the session")
	}
	for _, l := range lines {
		if l.str("correlationId") != id {
			t.Fatalf("log line with correlationId %q: %v", l.str("correlationId"), l)
		}
	}
	if forged := linesWhere(readLogs(t, rep.log), "msg", "forged"); len(forged) != 0 {
		t.Fatalf("forged log lines: %v", forged)
	}
}
