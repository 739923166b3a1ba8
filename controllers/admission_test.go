package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/controllers"
	"github.com/mocs-dev/upload-operator/internal/ratelimit"
)

// localCreateLimiter is SESSION_CREATE_RATE_LIMIT's rule on a replica's own
// log (the Redis limiter's, tested in internal/ratelimit, is the same rule).
type localCreateLimiter struct{ *ratelimit.Local }

func (l localCreateLimiter) Allow(_ context.Context, user string) ratelimit.Decision {
	ok, wait := l.Local.Allow(user)
	return ratelimit.Decision{Allowed: ok, RetryAfter: wait}
}

func (h *harness) createOwned(t *testing.T, name, owner string) client.ObjectKey {
	t.Helper()
	us := &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name},
		Spec: uploadsv1.UploadSessionSpec{Owner: owner,
			Files: []uploadsv1.FileSpec{{Name: "castle.pdf", ContentType: "application/pdf", SizeBytes: 100}}},
	}
	if err := k8s.Create(context.Background(), us); err != nil {
		t.Fatal(err)
	}
	return client.ObjectKeyFromObject(us)
}

// refusedWith reconciles key twice (finalizer, then the activation) and
// checks it stays Pending, Ready False with reason, with no session rows.
func (h *harness) refusedWith(t *testing.T, key client.ObjectKey, reason string) time.Duration {
	t.Helper()
	h.reconcile(t, key)
	res := h.reconcile(t, key)
	us := get(t, key)
	ready := meta.FindStatusCondition(us.Status.Conditions, uploadsv1.ConditionReady)
	if us.Status.Phase != uploadsv1.PhasePending || ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != reason {
		t.Fatalf("%s: phase %s, Ready %+v; want Pending, Ready False %s", key.Name, us.Status.Phase, ready, reason)
	}
	if n, err := h.svc.ActiveSessions(context.Background(), us.Spec.Owner); err != nil || n > 1 {
		t.Fatalf("sessions of %s: %d %v", us.Spec.Owner, n, err)
	}
	return res.RequeueAfter
}

// Sessions declared with kubectl apply obey the upload API's rules: the
// allow-list of groups, the active-session cap and the creation rate, admins
// exempt; a refused one stays Pending (Ready False, NotAllowed or
// QuotaExceeded) with an Event, and is activated once there is room.
func TestDeclaredSessionsObeyTheSameRules(t *testing.T) {
	h := newHarness(t, db)
	rec := fakeRecorder(h)
	sa := func(ns, name string) string { return "system:serviceaccount:" + ns + ":" + name }
	allowedNS := h.ns + "-uploaders"
	h.r.Admission = &controllers.Admission{
		AdminGroups:   []string{"system:serviceaccounts:" + h.ns + "-admins"},
		UploadGroups:  []string{"system:serviceaccounts:" + allowedNS},
		MaxActive:     1,
		CreateLimiter: localCreateLimiter{&ratelimit.Local{Limit: 2, Window: time.Hour}},
	}

	// Not in the allow-list (and a user whose groups cannot be known).
	h.refusedWith(t, h.createOwned(t, "outsider", sa("elsewhere", "builder")), uploadsv1.ReasonNotAllowed)
	h.refusedWith(t, h.createOwned(t, "human", "alice@example.com"), uploadsv1.ReasonNotAllowed)
	if evs := strings.Join(drain(rec), "\n"); strings.Count(evs, "Warning NotAllowed") != 2 {
		t.Fatalf("events: %s; want one NotAllowed warning per resource (not one per look)", evs)
	}

	// In the allow-list: one active session, then the cap.
	owner := sa(allowedNS, "builder")
	first := h.createOwned(t, "first", owner)
	h.reconcileTo(t, first, uploadsv1.PhaseActive)
	second := h.createOwned(t, "second", owner)
	if wait := h.refusedWith(t, second, uploadsv1.ReasonQuotaExceeded); wait <= 0 {
		t.Fatal("a session over the cap is not looked at again")
	}
	// Room again once the first ends: the second is activated.
	expiredOnPostgreSQL(t, first)
	h.clk.Step(ttl + time.Second)
	h.reconcileTo(t, first, uploadsv1.PhaseExpired)
	h.reconcileTo(t, second, uploadsv1.PhaseActive)

	// The creation rate (2 an hour, both used): the third waits for it.
	expiredOnPostgreSQL(t, second)
	h.clk.Step(ttl + time.Second)
	h.reconcileTo(t, second, uploadsv1.PhaseExpired)
	if wait := h.refusedWith(t, h.createOwned(t, "third", owner), uploadsv1.ReasonQuotaExceeded); wait < 59*time.Minute {
		t.Fatalf("over the creation rate: looked at again in %s; want when the window frees (about an hour)", wait)
	}

	// Admins are exempt from all of it.
	admin := sa(h.ns+"-admins", "ops")
	for _, name := range []string{"admin-1", "admin-2", "admin-3"} {
		h.reconcileTo(t, h.createOwned(t, name, admin), uploadsv1.PhaseActive)
	}
}

// A tenant's ServiceAccounts share SESSION_CREATE_RATE_LIMIT_PER_TENANT for
// declared sessions too.
func TestDeclaredSessionsShareTheTenantsCreationRate(t *testing.T) {
	h := newHarness(t, db)
	h.r.Admission = &controllers.Admission{TenantCreateLimiter: localCreateLimiter{&ratelimit.Local{Limit: 1, Window: time.Hour}}}
	sa := func(name string) string { return "system:serviceaccount:" + h.ns + "-bots:" + name }
	h.reconcileTo(t, h.createOwned(t, "first", sa("bot-1")), uploadsv1.PhaseActive)
	h.refusedWith(t, h.createOwned(t, "second", sa("bot-2")), uploadsv1.ReasonQuotaExceeded)
	h.reconcileTo(t, h.createOwned(t, "elsewhere", "system:serviceaccount:"+h.ns+"-other:bot-1"), uploadsv1.PhaseActive)
}
