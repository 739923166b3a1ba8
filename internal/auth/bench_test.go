package auth

import (
	"context"
	"testing"
	"time"
)

// BenchmarkAuthenticateCacheHit: the cost of auth on a part PUT when the
// token's TokenReview answer is cached (the common case).
func BenchmarkAuthenticateCacheHit(b *testing.B) {
	rev := &countingReviewer{users: map[string]User{"tok": {Name: "u", Groups: []string{"g"}}}}
	a := &Authenticator{Reviewer: rev, TTL: time.Hour}
	ctx := context.Background()
	_, _ = a.Authenticate(ctx, "tok")
	for b.Loop() {
		if _, err := a.Authenticate(ctx, "tok"); err != nil {
			b.Fatal(err)
		}
	}
}
