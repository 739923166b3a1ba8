package controllers

import (
	"context"
	"time"

	"github.com/go-logr/logr"

	"github.com/mocs-dev/upload-operator/internal/metrics"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// OrphanSweep aborts, every Interval on the leader, the multipart uploads no
// session can use any more (uploads.Service.SweepOrphanedUploads): the
// surplus of activations that crashed, lost S3's reply, or were still
// creating when their session ended. Without it such an upload would hold
// its parts in S3 for good.
type OrphanSweep struct {
	Uploads  OrphanSweeper
	Log      logr.Logger
	Interval time.Duration
	MinAge   time.Duration
}

// OrphanSweeper is the part of the upload engine the sweep uses.
type OrphanSweeper interface {
	SweepOrphanedUploads(ctx context.Context, log logr.Logger, minAge time.Duration) (int, error)
}

var _ OrphanSweeper = (*uploads.Service)(nil)

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
		n, err := o.Uploads.SweepOrphanedUploads(ctx, o.Log, o.MinAge)
		metrics.OrphanedUploadsAborted.Add(float64(n))
		if err != nil && ctx.Err() == nil {
			o.Log.Error(err, "orphaned upload sweep failed; the next sweep tries again", "aborted", n)
		}
	}
}

// NeedLeaderElection: one replica sweeps.
func (o *OrphanSweep) NeedLeaderElection() bool { return true }
