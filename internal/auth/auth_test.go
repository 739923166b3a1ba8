package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
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
	clk := clocktesting.NewFakePassiveClock(time.Unix(0, 0))
	rev := &countingReviewer{users: map[string]User{
		"tok-user":  {Name: "system:serviceaccount:default:dev-user", Groups: []string{"system:serviceaccounts"}},
		"tok-admin": {Name: "system:serviceaccount:admins:dev-admin", Groups: []string{"system:serviceaccounts:admins"}},
	}}
	a := &Authenticator{Reviewer: rev, AdminGroups: []string{"system:serviceaccounts:admins"}, TTL: 30 * time.Second,
		Clock: clk}
	ctx := context.Background()

	u, err := a.Authenticate(ctx, "tok-user")
	if err != nil || u.Admin || u.Name != "system:serviceaccount:default:dev-user" {
		t.Fatalf("user = %+v, %v", u, err)
	}
	if _, err := a.Authenticate(ctx, "tok-user"); err != nil || rev.calls != 1 {
		t.Fatalf("second call reviewed again (calls=%d, %v)", rev.calls, err)
	}
	clk.SetTime(clk.Now().Add(31 * time.Second))
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
	sum := sha256.Sum256([]byte("tok-user"))
	if _, ok := a.lru().Get(hex.EncodeToString(sum[:])); !ok {
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

// jwt makes a token with a JWT's shape (not signed: the fake reviewer decides).
func jwt(sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc([]byte(`{"sub":"`+sub+`"}`)) + "." + enc([]byte("signature"))
}

// Random bearer strings cost the API server nothing: anything that cannot be
// a JWT is refused locally.
func TestTokensThatCannotBeJWTsAreRefusedLocally(t *testing.T) {
	t.Parallel()
	rev := &countingReviewer{users: map[string]User{jwt("a"): {Name: "a"}}}
	a := &Authenticator{Reviewer: rev, TTL: time.Minute, RequireJWT: true}
	for _, tok := range []string{"random", "a.b", "a.b.c", "!!!.e30.sig", base64.RawURLEncoding.EncodeToString([]byte(`{"x":1}`)) + ".e30.sig",
		strings.Repeat("a", 20<<10)} {
		if _, err := a.Authenticate(context.Background(), tok); !errors.Is(err, ErrMalformedToken) || !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("%.20q: %v; want refused as malformed (401)", tok, err)
		}
	}
	if rev.calls != 0 {
		t.Fatalf("reviews = %d, want none", rev.calls)
	}
	if u, err := a.Authenticate(context.Background(), jwt("a")); err != nil || u.Name != "a" {
		t.Fatalf("a JWT: %+v %v", u, err)
	}
}

// slowReviewer answers after a delay, or never (until its context ends).
type slowReviewer struct {
	calls atomic.Int32
	delay time.Duration
}

func (s *slowReviewer) Review(ctx context.Context, token string) (User, bool, error) {
	s.calls.Add(1)
	select {
	case <-time.After(s.delay):
		return User{Name: "u"}, true, nil
	case <-ctx.Done():
		return User{}, false, ctx.Err()
	}
}

// Many requests with the same new token at once make one review.
func TestConcurrentReviewsOfOneTokenAreOne(t *testing.T) {
	t.Parallel()
	rev := &slowReviewer{delay: 200 * time.Millisecond}
	a := &Authenticator{Reviewer: rev, TTL: time.Minute, RequireJWT: true}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Authenticate(context.Background(), jwt("same"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := rev.calls.Load(); n != 1 {
		t.Fatalf("%d reviews for one token, want 1", n)
	}
}

// A review that the API server does not answer ends at the review deadline
// (503 AUTH_UNAVAILABLE for the caller), whatever the caller's own context.
func TestReviewsHaveADeadline(t *testing.T) {
	t.Parallel()
	a := &Authenticator{Reviewer: &slowReviewer{delay: time.Hour}, TTL: time.Minute, RequireJWT: true,
		ReviewTimeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := a.Authenticate(context.Background(), jwt("stuck"))
	if err == nil || errors.Is(err, ErrUnauthenticated) || time.Since(start) > 2*time.Second {
		t.Fatalf("= %v after %s; want an unavailable error at the deadline", err, time.Since(start))
	}
}

// A full cache evicts the least recently used answer, not every answer.
func TestFullCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	users := map[string]User{}
	for _, n := range []string{"a", "b", "c", "d"} {
		users[jwt(n)] = User{Name: n}
	}
	rev := &countingReviewer{users: users}
	a := &Authenticator{Reviewer: rev, TTL: time.Minute, RequireJWT: true, CacheSize: 3}
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c", "a", "d"} { // d evicts b, the least recently used
		if _, err := a.Authenticate(ctx, jwt(n)); err != nil {
			t.Fatal(err)
		}
	}
	if rev.calls != 4 {
		t.Fatalf("reviews = %d, want 4", rev.calls)
	}
	for _, n := range []string{"a", "c", "d"} {
		if _, err := a.Authenticate(ctx, jwt(n)); err != nil {
			t.Fatal(err)
		}
	}
	if rev.calls != 4 {
		t.Fatalf("a, c and d were reviewed again (reviews = %d): the cache was wiped", rev.calls)
	}
	if _, err := a.Authenticate(ctx, jwt("b")); err != nil || rev.calls != 5 {
		t.Fatalf("b: %v, reviews = %d; want b evicted and reviewed again", err, rev.calls)
	}
}
