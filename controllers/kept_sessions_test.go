package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/controllers"
)

// An owner keeps at most KEPT_SESSIONS_PER_USER finished resources the upload
// API created: the oldest finished beyond it are deleted; sessions still in
// use, declared ones and other owners' are left alone.
func TestKeptSessionsAreTrimmedPerOwner(t *testing.T) {
	h := newHarness(t, db)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	mk := func(name, owner string, phase uploadsv1.Phase, byAPI bool, finishedMin int) {
		us := &uploadsv1.UploadSession{
			ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name},
			Spec: uploadsv1.UploadSessionSpec{Owner: owner,
				Files: []uploadsv1.FileSpec{{Name: "castle.pdf", ContentType: "application/pdf", SizeBytes: 100}}},
		}
		if byAPI {
			us.Annotations = map[string]string{uploadsv1.CreatedByAPIAnnotation: "true"}
		}
		if err := k8s.Create(ctx, us); err != nil {
			t.Fatal(err)
		}
		us.Status.Phase = phase
		if phase == uploadsv1.PhaseFinalized {
			us.Status.FinalizedAt = &metav1.Time{Time: base.Add(time.Duration(finishedMin) * time.Minute)}
		}
		if err := k8s.Status().Update(ctx, us); err != nil {
			t.Fatal(err)
		}
	}
	for i, min := range []int{30, 10, 40, 20} { // finalized in this order: 1, 3, 0, 2
		mk(fmt.Sprintf("alice-%d", i), "alice", uploadsv1.PhaseFinalized, true, min)
	}
	mk("alice-active", "alice", uploadsv1.PhaseActive, true, 0)
	mk("alice-declared", "alice", uploadsv1.PhaseFinalized, false, 0)
	mk("bob-0", "bob", uploadsv1.PhaseFinalized, true, 0)

	k := &controllers.KeptSessions{Kube: k8s, Log: logr.Discard(), Namespace: h.ns, PerOwner: 2}
	if n, err := k.Trim(ctx); err != nil || n != 2 {
		t.Fatalf("Trim = %d, %v; want alice's 2 oldest finished deleted", n, err)
	}
	var list uploadsv1.UploadSessionList
	if err := k8s.List(ctx, &list, client.InNamespace(h.ns)); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, us := range list.Items {
		left = append(left, us.Name)
	}
	slices.Sort(left)
	if want := []string{"alice-0", "alice-2", "alice-active", "alice-declared", "bob-0"}; !slices.Equal(left, want) {
		t.Fatalf("left %v; want %v", left, want)
	}
	if n, err := k.Trim(ctx); err != nil || n != 0 {
		t.Fatalf("second Trim = %d, %v; want nothing more", n, err)
	}
}
