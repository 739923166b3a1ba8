package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// Only changes that ask for work wake the reconciler; its own status writes
// (and anyone else's) do not.
func TestReconcileTriggers(t *testing.T) {
	t.Parallel()
	base := func() *uploadsv1.UploadSession {
		return &uploadsv1.UploadSession{ObjectMeta: metav1.ObjectMeta{
			Name: "s", Generation: 1, ResourceVersion: "10",
			Labels:      map[string]string{uploadsv1.SessionIDLabel: "id"},
			Annotations: map[string]string{uploadsv1.LastActivityAnnotation: "t1"},
			Finalizers:  []string{uploadsv1.Finalizer},
		}}
	}
	now := metav1.NewTime(time.Now())
	for _, tc := range []struct {
		name   string
		change func(*uploadsv1.UploadSession)
		want   bool
	}{
		{"status only", func(us *uploadsv1.UploadSession) {
			us.Status.Phase, us.Status.Progress, us.ResourceVersion = uploadsv1.PhaseActive, "50%", "11"
		}, false},
		{"periodic resync (the object unchanged)", func(*uploadsv1.UploadSession) {}, true},
		{"spec (generation)", func(us *uploadsv1.UploadSession) { us.Generation = 2 }, true},
		{"activity annotation bumped", func(us *uploadsv1.UploadSession) { us.Annotations[uploadsv1.LastActivityAnnotation] = "t2" }, true},
		{"session-id label removed", func(us *uploadsv1.UploadSession) { us.Labels = nil }, true},
		{"finalizer removed", func(us *uploadsv1.UploadSession) { us.Finalizers = nil }, true},
		{"deletion began", func(us *uploadsv1.UploadSession) { us.DeletionTimestamp = &now }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			old, cur := base(), base()
			tc.change(cur)
			if got := reconcileTriggers().Update(event.UpdateEvent{ObjectOld: old, ObjectNew: cur}); got != tc.want {
				t.Errorf("update %s: reconcile = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}
