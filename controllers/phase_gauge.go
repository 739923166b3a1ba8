package controllers

import (
	"context"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/metrics"
)

// PhaseGauge publishes mocupload_sessions{phase} from the manager's cache
// every Interval, on the leader.
type PhaseGauge struct {
	Client   client.Client
	Interval time.Duration
}

// Start implements manager.Runnable.
func (g *PhaseGauge) Start(ctx context.Context) error {
	iv := g.Interval
	if iv == 0 {
		iv = 5 * time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		g.publish(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// NeedLeaderElection: one replica reports the gauge.
func (g *PhaseGauge) NeedLeaderElection() bool { return true }

func (g *PhaseGauge) publish(ctx context.Context) {
	var list uploadsv1.UploadSessionList
	if err := g.Client.List(ctx, &list); err != nil {
		return
	}
	counts := map[uploadsv1.Phase]int{}
	for _, us := range list.Items {
		p := us.Status.Phase
		if p == "" {
			p = uploadsv1.PhasePending
		}
		counts[p]++
	}
	for _, p := range []uploadsv1.Phase{uploadsv1.PhasePending, uploadsv1.PhaseActive, uploadsv1.PhaseFinalizing,
		uploadsv1.PhaseFinalized, uploadsv1.PhaseExpired, uploadsv1.PhaseFailed} {
		metrics.SessionsByPhase.WithLabelValues(string(p)).Set(float64(counts[p]))
	}
}
