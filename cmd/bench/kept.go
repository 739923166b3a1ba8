package main

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// keptResult is the manager's memory with N finished resources in its
// informer's cache (issue: the cost of keeping resources for retention).
type keptResult struct {
	Sessions    int
	BaselineRSS int64 // bytes, the manager settled with none
	KeptRSS     int64 // bytes, settled with Sessions finished resources cached
	PeakRSS     int64
	PerSession  int64 // (KeptRSS − BaselineRSS) / Sessions
}

// keptMemory measures what N finished sessions (the most one replica keeps:
// KEPT_SESSIONS_PER_USER × users, or SESSION_RETENTION's worth) cost in the
// manager's memory: they are created Expired (nothing to reconcile but
// retention, set far away), then a manager watching their namespace syncs
// its cache and settles.
func (b *bench) keptMemory(res *results) error {
	n := 10000
	if *quick {
		n = 1000
	}
	ns := "bench-kept"
	if err := b.k8s.Create(b.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	env := map[string]string{"WATCH_NAMESPACE": ns, "SESSION_NAMESPACE": ns, "EXPIRED_RETENTION": "10000h",
		"SESSION_RETENTION": "10000h", "RESYNC_INTERVAL": "10m", "KEPT_SESSIONS_PER_USER": "0"}
	settle := func() (int64, int64, error) {
		m, err := b.manager(env)
		if err != nil {
			return 0, 0, err
		}
		defer m.stop()
		// The cache is synced before the manager answers; a minute lets
		// the reconciles of every resource and the GC settle.
		deadline := time.Now().Add(time.Minute)
		var rss int64
		for time.Now().Before(deadline) {
			time.Sleep(5 * time.Second)
			rss = m.rss()
		}
		return rss, m.peakRSS(), nil
	}
	say("kept: the manager with no resources")
	base, _, err := settle()
	if err != nil {
		return err
	}
	say("kept: creating %d Expired sessions", n)
	expires := metav1.NewTime(time.Now().Add(-time.Hour))
	if err := parallel(32, n, func(i int) error {
		us := &uploadsv1.UploadSession{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("kept-%05d", i), Namespace: ns,
				Annotations: map[string]string{uploadsv1.CreatedByAPIAnnotation: "true"}},
			Spec: uploadsv1.UploadSessionSpec{Owner: b.owner, Files: []uploadsv1.FileSpec{
				{Name: "castle-instructions.pdf", ContentType: "application/pdf", SizeBytes: 48 << 20}}},
		}
		if err := b.k8s.Create(b.ctx, us); err != nil {
			return err
		}
		us.Status = uploadsv1.UploadSessionStatus{Phase: uploadsv1.PhaseExpired, PhaseReason: "expiresAt passed before finalization",
			SessionID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), ExpiresAt: &expires}
		return b.k8s.Status().Update(b.ctx, us)
	}); err != nil {
		return err
	}
	say("kept: the manager with %d resources cached", n)
	kept, peak, err := settle()
	if err != nil {
		return err
	}
	res.Kept = keptResult{Sessions: n, BaselineRSS: base, KeptRSS: kept, PeakRSS: peak, PerSession: (kept - base) / int64(n)}
	say("kept: RSS %d MiB with none, %d MiB with %d (peak %d MiB): %d bytes each", base>>20, kept>>20, n, peak>>20, res.Kept.PerSession)
	return nil
}
