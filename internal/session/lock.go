package session

import "time"

// DefaultStaleLockAfter is how old a finalize lock must be before another
// finalize may take it over.
const DefaultStaleLockAfter = 5 * time.Minute

// LockStale reports whether a lock taken at takenAt is stale at now: strictly
// older than after. A lock exactly `after` old is still fresh, so 4m59.999s
// and 5m00.000s are fresh and 5m00.001s is stale with the default.
func LockStale(takenAt, now time.Time, after time.Duration) bool {
	return now.Sub(takenAt) > after
}
