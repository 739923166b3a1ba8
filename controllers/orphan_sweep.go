package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/metrics"
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
}

// OrphanSweeper is the part of the upload engine the sweep uses.
type OrphanSweeper interface {
	SweepOrphanedUploads(ctx context.Context, log logr.Logger, minAge time.Duration) (int, error)
	SweepOrphanedObjects(ctx context.Context, log logr.Logger, minAge time.Duration, keep map[uuid.UUID]bool) (int, error)
	FinishRemovals(ctx context.Context, log logr.Logger, limit int) (int, error)
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
	} {
		n, err := step.run()
		step.counter.Add(float64(n))
		if err != nil && ctx.Err() == nil {
			o.Log.Error(err, "orphan sweep step failed; the next sweep tries again", "step", step.what, "done", n)
		}
	}
}

// finalizedByResource names the sessions some resource reports Finalized.
func (o *OrphanSweep) finalizedByResource(ctx context.Context) (map[uuid.UUID]bool, error) {
	keep := map[uuid.UUID]bool{}
	if o.Kube == nil {
		return keep, nil
	}
	var list uploadsv1.UploadSessionList
	if err := o.Kube.List(ctx, &list); err != nil {
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
