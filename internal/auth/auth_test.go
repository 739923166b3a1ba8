package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"
)

// countingReviewer stands in for the API server in these unit tests only; the
// real TokenReview path is exercised end to end in test/e2e.
type countingReviewer struct {
	mu    sync.Mutex
	calls int
	users map[string]User
	err   error
}

func (c *countingReviewer) Review(_ context.Context, token string) (User, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.err != nil {
		return User{}, false, c.err
	}
	u, ok := c.users[token]
	return u, ok, nil
}

func TestAuthenticatorCachesByTokenHashForTTL(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	rev := &countingReviewer{users: map[string]User{
		"tok-user":  {Name: "system:serviceaccount:default:dev-user", Groups: []string{"system:serviceaccounts"}},
		"tok-admin": {Name: "system:serviceaccount:admins:dev-admin", Groups: []string{"system:serviceaccounts:admins"}},
	}}
	a := &Authenticator{Reviewer: rev, AdminGroups: []string{"system:serviceaccounts:admins"}, TTL: 30 * time.Second,
		Now: func() time.Time { return now }}
	ctx := context.Background()

	u, err := a.Authenticate(ctx, "tok-user")
	if err != nil || u.Admin || u.Name != "system:serviceaccount:default:dev-user" {
		t.Fatalf("user = %+v, %v", u, err)
	}
	if _, err := a.Authenticate(ctx, "tok-user"); err != nil || rev.calls != 1 {
		t.Fatalf("second call reviewed again (calls=%d, %v)", rev.calls, err)
	}
	now = now.Add(31 * time.Second)
	if _, err := a.Authenticate(ctx, "tok-user"); err != nil || rev.calls != 2 {
		t.Fatalf("expired entry not reviewed again (calls=%d)", rev.calls)
	}
	if u, err := a.Authenticate(ctx, "tok-admin"); err != nil || !u.Admin {
		t.Fatalf("admin = %+v, %v", u, err)
	}
	if _, err := a.Authenticate(ctx, "forged"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("forged token: %v", err)
	}
	if _, err := a.Authenticate(ctx, ""); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("empty token: %v", err)
	}
	// Entries are keyed by the token's SHA-256: the raw token is not kept.
	if _, ok := a.cache[sha256.Sum256([]byte("tok-user"))]; !ok {
		t.Fatal("tok-user's answer is not cached under the SHA-256 of the token")
	}
	rev.err = errors.New("apiserver down")
	if _, err := a.Authenticate(ctx, "new-token"); err == nil || errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("review error = %v, want a non-auth error (503, not 401)", err)
	}
}

func TestCanAccess(t *testing.T) {
	t.Parallel()
	if !(User{Name: "a"}).CanAccess("a") || (User{Name: "a"}).CanAccess("b") || !(User{Name: "x", Admin: true}).CanAccess("b") {
		t.Fatal("ownership rules broken")
	}
}
