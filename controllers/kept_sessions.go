package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// KeptSessions bounds the finished resources the upload API created that one
// owner keeps in SESSION_NAMESPACE: past PerOwner, the leader deletes the
// oldest early (a Finalized one's MOC stays; deleting takes nothing from it).
// Without it, a caller that creates and finalizes as fast as its limits
// allow (30 and 10 a minute) would keep about 100,000 resources for
// SESSION_RETENTION (a week) in etcd and in every replica's informer.
// Sessions declared with manifests live in their tenants' namespaces, where
// a ResourceQuota on count/uploadsessions.uploads.mocs.dev bounds them.
type KeptSessions struct {
	Kube      client.Client
	Log       logr.Logger
	Namespace string
	PerOwner  int
}

// Trim deletes the oldest finished API-created resources of each owner past
// PerOwner and returns how many it deleted.
func (k *KeptSessions) Trim(ctx context.Context) (int, error) {
	if k.PerOwner <= 0 {
		return 0, nil
	}
	var list uploadsv1.UploadSessionList
	// Read only: the cache's objects themselves, not a copy of each (with
	// thousands kept, the copies would be the sweep's largest allocation).
	if err := k.Kube.List(ctx, &list, client.InNamespace(k.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return 0, fmt.Errorf("list UploadSessions of %s: %w", k.Namespace, err)
	}
	byOwner := map[string][]*uploadsv1.UploadSession{}
	for i := range list.Items {
		us := &list.Items[i]
		if us.Annotations[uploadsv1.CreatedByAPIAnnotation] == "" || !us.DeletionTimestamp.IsZero() || !finished(us.Status.Phase) {
			continue
		}
		byOwner[us.Spec.Owner] = append(byOwner[us.Spec.Owner], us)
	}
	deleted := 0
	for owner, kept := range byOwner {
		if len(kept) <= k.PerOwner {
			continue
		}
		slices.SortFunc(kept, func(a, b *uploadsv1.UploadSession) int { return finishedAt(a).Compare(finishedAt(b)) })
		for _, us := range kept[:len(kept)-k.PerOwner] {
			if err := k.Kube.Delete(ctx, us, client.Preconditions{UID: &us.UID}); client.IgnoreNotFound(err) != nil {
				return deleted, fmt.Errorf("delete %s/%s: %w", us.Namespace, us.Name, err)
			}
			deleted++
		}
		k.Log.Info("deleted the oldest finished sessions of an owner over its kept cap", "owner", owner,
			"deleted", len(kept)-k.PerOwner, "cap", k.PerOwner)
	}
	return deleted, nil
}

func finished(p uploadsv1.Phase) bool {
	return p == uploadsv1.PhaseFinalized || p == uploadsv1.PhaseExpired || p == uploadsv1.PhaseFailed
}

// finishedAt orders finished sessions: when finalized, else when created.
func finishedAt(us *uploadsv1.UploadSession) time.Time {
	if us.Status.FinalizedAt != nil {
		return us.Status.FinalizedAt.Time
	}
	return us.CreationTimestamp.Time
}
