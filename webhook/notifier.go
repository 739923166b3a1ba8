package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// Notifier batches activity bumps (uploadsv1.LastActivityAnnotation, with the
// correlation id of the last request that touched the session): the
// reconciler, on the leader and maybe another replica, refreshes the status
// from PostgreSQL when it changes. At most one write per session per
// interval, however many parts arrive.
type Notifier struct {
	Kube     client.Client
	Log      logr.Logger
	Interval time.Duration

	mu    sync.Mutex
	dirty map[types.NamespacedName]string // → correlation id
}

// Notify marks a session's resource for a bump.
func (n *Notifier) Notify(namespace, name, correlationID string) {
	n.mu.Lock()
	if n.dirty == nil {
		n.dirty = map[types.NamespacedName]string{}
	}
	n.dirty[types.NamespacedName{Namespace: namespace, Name: name}] = correlationID
	n.mu.Unlock()
}

// Start flushes every Interval until ctx ends, then once more (manager.Runnable).
func (n *Notifier) Start(ctx context.Context) error {
	iv := n.Interval
	if iv == 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			n.flush(context.Background()) //nolint:contextcheck // the last flush runs after the manager's context ended
			return nil
		case <-t.C:
			n.flush(ctx)
		}
	}
}

// NeedLeaderElection: every replica that takes parts bumps.
func (n *Notifier) NeedLeaderElection() bool { return false }

func (n *Notifier) flush(ctx context.Context) {
	n.mu.Lock()
	batch := n.dirty
	n.dirty = nil
	n.mu.Unlock()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for key, corr := range batch {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q,%q:%q}}}`, uploadsv1.LastActivityAnnotation, now, uploadsv1.CorrelationIDAnnotation, corr)
		us := &uploadsv1.UploadSession{}
		us.Namespace, us.Name = key.Namespace, key.Name
		if err := n.Kube.Patch(ctx, us, client.RawPatch(types.MergePatchType, []byte(patch))); client.IgnoreNotFound(err) != nil {
			n.Log.Error(err, "bump session activity", "session", key.String())
		}
	}
}
