package uploads

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/logging"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// Errors that end a finalize whose lease is gone; the work context's cause.
var (
	// errLockLost: a renewal found the lock no longer ours (taken over after
	// it went stale, or the session moved on).
	errLockLost = errors.New("finalize lock lost")
	// errLeaseLapsing: renewals have failed for long enough that the lock may
	// be stale on PostgreSQL's clock soon; the holder stops before anyone can
	// take it over, so two holders never work at once.
	errLeaseLapsing = errors.New("finalize lease not renewed in time")
)

// lease is a finalize lock its holder keeps: a heartbeat renews finalizing_at
// every renewEvery (a tenth of the stale window) for as long as the finalize
// runs. Its context is the finalize's work context and is cancelled as soon as
// a renewal finds the lock gone, or when no renewal has succeeded for
// three quarters of the window; every S3 completion and the commit run on it,
// and each completion renews (checks) the lock right before it.
//
// Elapsed time is measured on this process's monotonic clock from the moment a
// successful renewal was sent, which is no later than PostgreSQL stamped it:
// the holder's idea of its lease never outlives PostgreSQL's.
type lease struct {
	db         *store.Store
	id, token  uuid.UUID
	staleAfter time.Duration
	log        logr.Logger

	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu        sync.Mutex
	renewedAt time.Time // when the last successful renewal (or the acquisition) was sent
}

// holdLease starts keeping a lock acquired at acquiredAt (sent time).
func (s *Service) holdLease(ctx context.Context, log logr.Logger, id, token uuid.UUID, acquiredAt time.Time) *lease {
	wctx, cancel := context.WithCancelCause(ctx)
	l := &lease{db: s.DB, id: id, token: token, staleAfter: s.StaleAfter(), log: log,
		ctx: wctx, cancel: cancel, done: make(chan struct{}), renewedAt: acquiredAt}
	go l.heartbeat()
	return l
}

// renewEvery is how often the holder renews: well inside the stale window.
func (l *lease) renewEvery() time.Duration { return max(l.staleAfter/10, 10*time.Millisecond) }

// safeFor is how long after the last successful renewal the holder may keep
// working: a quarter of the window is left for the work in flight to stop.
func (l *lease) safeFor() time.Duration { return l.staleAfter * 3 / 4 }

func (l *lease) heartbeat() {
	defer close(l.done)
	t := time.NewTicker(l.renewEvery())
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		if err := l.renew(l.ctx); err != nil {
			if errors.Is(err, errLockLost) || errors.Is(err, errLeaseLapsing) {
				return
			}
			if l.ctx.Err() != nil {
				return
			}
			logging.Warn(l.log, "could not renew the finalize lock; retrying", "error", err.Error())
		}
	}
}

// renew renews the lock now. It is the fence before every S3 completion: an
// error means the holder must not go on.
func (l *lease) renew(ctx context.Context) error {
	if cause := l.lost(); cause != nil {
		return cause
	}
	sent := time.Now()
	rctx, cancel := context.WithTimeout(ctx, l.renewEvery())
	ok, err := l.db.RenewLock(rctx, l.id, l.token)
	cancel()
	switch {
	case err == nil && ok:
		l.mu.Lock()
		if sent.After(l.renewedAt) {
			l.renewedAt = sent
		}
		l.mu.Unlock()
		return nil
	case err == nil:
		l.log.Info("finalize lock lost: another finalize took it over or the session moved on; stopping")
		l.cancel(errLockLost)
		return errLockLost
	}
	l.mu.Lock()
	since := time.Since(l.renewedAt)
	l.mu.Unlock()
	if since > l.safeFor() {
		logging.Warn(l.log, "finalize lease lapsing: no renewal succeeded in time; stopping before the lock can go stale",
			"sinceLastRenewalMs", since.Milliseconds(), "staleLockAfter", l.staleAfter.String())
		l.cancel(errLeaseLapsing)
		return errLeaseLapsing
	}
	return err
}

// lost is why the lease ended early (nil while it holds).
func (l *lease) lost() error {
	if l.ctx.Err() == nil {
		return nil
	}
	if cause := context.Cause(l.ctx); errors.Is(cause, errLockLost) || errors.Is(cause, errLeaseLapsing) {
		return cause
	}
	return nil
}

// stop ends the heartbeat (the finalize is over, one way or the other).
func (l *lease) stop() {
	l.cancel(context.Canceled)
	<-l.done
}
