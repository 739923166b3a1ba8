package controllers

import (
	"maps"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// reconcileTriggers lets through the updates that ask for work: the spec
// changed (generation; spec.finalize set), the upload API bumped the activity
// annotation (parts arrived, a finalize over HTTP), deletion began, or someone
// changed the finalizer or the session-id label the reconciler keeps. A
// status-only update — the reconciler's own status patch above all — does not
// bring another reconcile: timed work (expiry, stale locks, retention) asks
// for its own requeue, and the periodic resync covers what PostgreSQL changes
// behind the resource's back.
func reconcileTriggers() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		if e.ObjectOld == nil || e.ObjectNew == nil {
			return true
		}
		o, n := e.ObjectOld, e.ObjectNew
		// The informer's periodic resync hands the unchanged object again: a
		// safety net for a resource whose requeue was lost, let through.
		return o.GetResourceVersion() == n.GetResourceVersion() ||
			o.GetGeneration() != n.GetGeneration() ||
			!maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
			!maps.Equal(o.GetLabels(), n.GetLabels()) ||
			!slices.Equal(o.GetFinalizers(), n.GetFinalizers()) ||
			!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
	}}
}
