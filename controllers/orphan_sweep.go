package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/metrics"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// OrphanSweep tidies S3, every Interval on the leader: it aborts the
// multipart uploads no session can use any more (the surplus of activations
// that crashed, lost S3's reply, or were still creating when their session
// ended), deletes the objects of sessions that can no longer use them (a
// completion that landed after its session's delete or removal), and finishes
// the removals of failed and expired sessions that were cut off. Without it
// such uploads and objects would stay in S3 for good.
type OrphanSweep struct {
	Uploads  OrphanSweeper
	Log      logr.Logger
	Interval time.Duration
	MinAge   time.Duration
	// Kube reads the UploadSessions (the manager's cache): the objects of a
	// session a resource reports Finalized are never swept, whatever
	// PostgreSQL says (it may have lost the MOC in a failover). nil: none kept.
	Kube client.Reader
	// Live reads a resource from the API server itself, to confirm that one
	// the cache does not hold is gone (nil: no resourceless sessions are
	// removed). ResourceGrace is how long a session's resource must have been
	// seen gone first.
	Live          client.Reader
	ResourceGrace time.Duration
	// Namespaces are those the manager watches (nil: all): only sessions
	// bound there are judged, since only those are in the cache (and other
	// namespaces may be another installation's).
	Namespaces []string
	// Kept bounds the finished resources each HTTP caller keeps (nil: no
	// bound).
	Kept *KeptSessions

	// goneSince is when each session's resource was first seen gone (on
	// this leader: a new leader starts its grace again, which errs on the
	// side of keeping).
	goneSince map[uuid.UUID]time.Time
}

// OrphanSweeper is the part of the upload engine the sweep uses.
type OrphanSweeper interface {
	SweepOrphanedUploads(ctx context.Context, log logr.Logger, minAge time.Duration) (int, error)
	SweepOrphanedObjects(ctx context.Context, log logr.Logger, minAge time.Duration, keep map[uuid.UUID]bool) (int, error)
	FinishRemovals(ctx context.Context, log logr.Logger, limit int) (int, error)
	BoundUnfinalized(ctx context.Context, olderThan time.Duration, namespaces []string, limit int) ([]store.ResourceRef, error)
	Discard(ctx context.Context, log logr.Logger, id uuid.UUID) error
	// Now is the session clock (Engine.Now).
	Now() time.Time
}

var _ OrphanSweeper = (*uploads.Service)(nil)

// removalsPerSweep bounds the pending removals one sweep finishes.
const removalsPerSweep = 100

// Start implements manager.Runnable.
func (o *OrphanSweep) Start(ctx context.Context) error {
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		o.sweep(ctx)
	}
}

func (o *OrphanSweep) sweep(ctx context.Context) {
	for _, step := range []struct {
		what    string
		counter prometheus.Counter
		run     func() (int, error)
	}{
		{"orphaned uploads", metrics.OrphanedUploadsAborted, func() (int, error) { return o.Uploads.SweepOrphanedUploads(ctx, o.Log, o.MinAge) }},
		{"orphaned objects", metrics.OrphanedObjectsDeleted, func() (int, error) {
			keep, err := o.finalizedByResource(ctx)
			if err != nil {
				return 0, err
			}
			return o.Uploads.SweepOrphanedObjects(ctx, o.Log, o.MinAge, keep)
		}},
		{"pending removals", metrics.RemovalsFinished, func() (int, error) { return o.Uploads.FinishRemovals(ctx, o.Log, removalsPerSweep) }},
		{"resourceless sessions", metrics.ResourcelessSessionsRemoved, func() (int, error) { return o.RemoveResourceless(ctx) }},
		{"kept sessions", metrics.KeptSessionsTrimmed, func() (int, error) {
			if o.Kept == nil {
				return 0, nil
			}
			return o.Kept.Trim(ctx)
		}},
	} {
		n, err := step.run()
		step.counter.Add(float64(n))
		if err != nil && ctx.Err() == nil {
			o.Log.Error(err, "orphan sweep step failed; the next sweep tries again", "step", step.what, "done", n)
		}
	}
}

// Bounds of one sweep for sessions whose resource is gone: rows compared with
// the cache, and resources then read from the API server.
const (
	boundSessionsPerSweep = 10000
	liveReadsPerSweep     = 100
)

// RemoveResourceless removes, like a delete, the sessions whose resource is
// gone without its finalizer having run (a tenant patched the finalizer away,
// or deleted the namespace's finalizers by force): without this their uploads
// and objects stay in S3 and their rows count against the owner's cap for
// good. A resource the cache does not hold is read from the API server
// before anything is removed (the cache may lag, or not watch the
// namespace), and must stay gone for ResourceGrace.
func (o *OrphanSweep) RemoveResourceless(ctx context.Context) (int, error) {
	if o.Live == nil || o.Kube == nil {
		return 0, nil
	}
	refs, err := o.Uploads.BoundUnfinalized(ctx, o.ResourceGrace, o.Namespaces, boundSessionsPerSweep)
	if err != nil {
		return 0, err
	}
	var list uploadsv1.UploadSessionList
	if err := o.Kube.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return 0, fmt.Errorf("list UploadSessions: %w", err)
	}
	cached := make(map[string]bool, len(list.Items))
	for _, us := range list.Items {
		cached[string(us.UID)] = true
	}
	now := o.now()
	seen := map[uuid.UUID]bool{}
	removed, reads := 0, 0
	for _, ref := range refs {
		if cached[ref.UID] || reads >= liveReadsPerSweep {
			continue
		}
		reads++
		gone, err := o.resourceGone(ctx, ref)
		if err != nil {
			return removed, err
		}
		if !gone {
			continue
		}
		seen[ref.ID] = true
		if o.goneSince == nil {
			o.goneSince = map[uuid.UUID]time.Time{}
		}
		first, ok := o.goneSince[ref.ID]
		if !ok {
			o.goneSince[ref.ID] = now
			continue
		}
		if now.Sub(first) < o.ResourceGrace {
			continue
		}
		if err := o.Uploads.Discard(ctx, o.Log, ref.ID); err != nil {
			var busy *uploads.InProgressError
			if errors.As(err, &busy) {
				continue // a finalize holds a live lock: the next sweep
			}
			return removed, fmt.Errorf("remove session %s of the deleted resource %s/%s: %w", ref.ID, ref.Namespace, ref.Name, err)
		}
		o.Log.Info("removed a session whose resource is gone (its finalizer never ran)",
			"sessionId", ref.ID.String(), "namespace", ref.Namespace, "name", ref.Name, "uid", ref.UID)
		delete(o.goneSince, ref.ID)
		removed++
	}
	for id := range o.goneSince {
		if !seen[id] {
			delete(o.goneSince, id) // back, or removed by someone else
		}
	}
	return removed, nil
}

// resourceGone reads the resource a session is bound to from the API server:
// gone when there is none of that name, or one with another UID.
func (o *OrphanSweep) resourceGone(ctx context.Context, ref store.ResourceRef) (bool, error) {
	var us uploadsv1.UploadSession
	err := o.Live.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &us)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read UploadSession %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	return string(us.UID) != ref.UID, nil
}

// now is the engine's session clock, as the reconciler's is.
func (o *OrphanSweep) now() time.Time { return o.Uploads.Now() }

// finalizedByResource names the sessions some resource reports Finalized.
func (o *OrphanSweep) finalizedByResource(ctx context.Context) (map[uuid.UUID]bool, error) {
	keep := map[uuid.UUID]bool{}
	if o.Kube == nil {
		return keep, nil
	}
	var list uploadsv1.UploadSessionList
	if err := o.Kube.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list UploadSessions: %w", err)
	}
	for _, us := range list.Items {
		if id, err := uuid.Parse(us.Status.SessionID); err == nil && us.Status.MocID != "" {
			keep[id] = true
		}
	}
	return keep, nil
}

// NeedLeaderElection: one replica sweeps.
func (o *OrphanSweep) NeedLeaderElection() bool { return true }
