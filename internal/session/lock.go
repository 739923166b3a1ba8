package session

import "time"

// DefaultStaleLockAfter is how old a finalize lock must be before another
// finalize may take it over.
const DefaultStaleLockAfter = 5 * time.Minute

// LockStale reports whether a finalize lock of the given age is stale: strictly
// older than after. A lock exactly `after` old is still fresh, so 4m59.999s and
// 5m00.000s are fresh and 5m00.001s is stale with the default. The age is
// measured on PostgreSQL's clock (the store reads it with the row), never on a
// replica's, and the store's SQL applies the same rule when it takes the lock.
func LockStale(age, after time.Duration) bool {
	return age > after
}

// MaxPartURLTTL is the longest a presigned part URL may be valid
// (PART_URL_TTL's bound): S3 caps a presigned URL's lifetime, and a shorter
// one limits what a leaked URL is good for.
const MaxPartURLTTL = 15 * time.Minute
