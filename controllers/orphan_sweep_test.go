package controllers_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/controllers"
)

// laggingCache is a cache that has not seen any resource yet.
type laggingCache struct{ client.Reader }

func (laggingCache) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

// The sweep removes a session only when the API server itself says its
// resource is gone, and only once it has stayed gone for the grace; a
// resource the cache has not seen, or one in a namespace the manager does
// not watch, is left alone; a resource of the same name but another UID is
// not the session's.
func TestResourcelessSessionsAreRemovedOnlyWhenTheirResourceIsGone(t *testing.T) {
	h := newHarness(t, db)
	ctx := context.Background()
	sweep := &controllers.OrphanSweep{Uploads: h.svc, Log: logr.Discard(), Kube: laggingCache{k8s}, Live: k8s,
		ResourceGrace: time.Minute, Namespaces: []string{h.ns}}
	active := func(name string) (client.ObjectKey, uuid.UUID) {
		key := h.create(t, name)
		h.reconcileTo(t, key, uploadsv1.PhaseActive)
		id := uuid.MustParse(get(t, key).Status.SessionID)
		mustExec(t, `UPDATE upload_sessions SET created_at = now() - interval '1 hour' WHERE id = $1`, id)
		return key, id
	}
	dropFinalizer := func(key client.ObjectKey) {
		us := get(t, key)
		us.Finalizers = nil
		if err := k8s.Update(context.Background(), us); err != nil {
			t.Fatal(err)
		}
		if err := k8s.Delete(context.Background(), us); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(id uuid.UUID) bool {
		_, err := db.GetSession(ctx, id)
		return err == nil
	}
	liveKey, liveID := active("live")
	goneKey, goneID := active("gone")
	replacedKey, replacedID := active("replaced")
	dropFinalizer(goneKey)
	dropFinalizer(replacedKey)
	h.create(t, replacedKey.Name) // same name, another UID

	if n, err := sweep.RemoveResourceless(ctx); err != nil || n != 0 {
		t.Fatalf("first sweep removed %d (%v); want none before the grace", n, err)
	}
	h.clk.Step(59 * time.Second)
	if n, err := sweep.RemoveResourceless(ctx); err != nil || n != 0 || !exists(goneID) {
		t.Fatalf("sweep within the grace removed %d (%v)", n, err)
	}
	// A manager that watches another namespace does not judge these.
	other := &controllers.OrphanSweep{Uploads: h.svc, Log: logr.Discard(), Kube: laggingCache{k8s}, Live: k8s,
		ResourceGrace: time.Minute, Namespaces: []string{"another-namespace"}}
	for range 2 {
		if n, err := other.RemoveResourceless(ctx); err != nil || n != 0 {
			t.Fatalf("a manager watching another namespace removed %d (%v)", n, err)
		}
		h.clk.Step(time.Minute)
	}
	if n, err := sweep.RemoveResourceless(ctx); err != nil || n != 2 {
		t.Fatalf("sweep after the grace removed %d (%v); want the two sessions whose resource is gone", n, err)
	}
	if exists(goneID) || exists(replacedID) || !exists(liveID) {
		t.Fatalf("rows after the sweep: gone %v, replaced %v, live %v; want only the live one", exists(goneID), exists(replacedID), exists(liveID))
	}
	noMultipartUploads(t, goneID.String())
	noMultipartUploads(t, replacedID.String())
	if us := get(t, liveKey); us.Status.Phase != uploadsv1.PhaseActive {
		t.Fatalf("the live resource is %s", us.Status.Phase)
	}
}
