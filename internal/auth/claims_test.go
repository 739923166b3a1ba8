package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/mocs-dev/upload-operator/internal/ratelimit"
)

// jwtWith is a JWT-shaped token with the given claims (signature made up:
// only the API server checks it).
func jwtWith(claims map[string]any) string {
	enc := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(claims)
	return enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc(payload) + "." + enc([]byte("signature"))
}

// A token whose own claims say the review would refuse it is refused
// without one; a claim that is absent, or wrong by less than the leeway,
// is left to the API server.
func TestClaimsRefuseWithoutAReview(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name   string
		claims map[string]any
		want   error // nil: reviewed
	}{
		{"expired an hour ago", map[string]any{"exp": now.Add(-time.Hour).Unix(), "aud": "uploads"}, ErrTokenExpired},
		{"expired within the leeway", map[string]any{"exp": now.Add(-30 * time.Second).Unix(), "aud": "uploads"}, nil},
		{"valid only from tomorrow", map[string]any{"nbf": now.Add(24 * time.Hour).Unix(), "aud": "uploads"}, ErrTokenNotYetValid},
		{"another audience", map[string]any{"exp": now.Add(time.Hour).Unix(), "aud": []string{"https://kubernetes.default.svc"}}, ErrTokenAudience},
		{"one of its audiences is ours", map[string]any{"aud": []string{"other", "uploads"}}, nil},
		{"no audience claim (a legacy token)", map[string]any{"sub": "x"}, nil},
		{"another issuer", map[string]any{"iss": "https://evil.example", "aud": "uploads"}, ErrTokenIssuer},
		{"our issuer", map[string]any{"iss": "https://kubernetes.default.svc", "aud": "uploads", "exp": now.Add(time.Hour).Unix()}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok := jwtWith(tc.claims)
			rev := &countingReviewer{users: map[string]User{tok: {Name: "u"}}}
			a := &Authenticator{Reviewer: rev, TTL: time.Minute, RequireJWT: true, Clock: clocktesting.NewFakePassiveClock(now),
				Audiences: []string{"uploads"}, Issuers: []string{"https://kubernetes.default.svc", ""}}
			_, err := a.Authenticate(context.Background(), tok)
			if tc.want != nil {
				if !errors.Is(err, tc.want) || !errors.Is(err, ErrUnauthenticated) || rev.calls != 0 {
					t.Fatalf("err = %v after %d reviews; want %v without a review", err, rev.calls, tc.want)
				}
				return
			}
			if err != nil || rev.calls != 1 {
				t.Fatalf("err = %v after %d reviews; want it reviewed and accepted", err, rev.calls)
			}
		})
	}
}

// A JWT-shaped token whose payload is no JSON object cannot be a
// ServiceAccount or OIDC token.
func TestAPayloadThatIsNoClaimsIsMalformed(t *testing.T) {
	t.Parallel()
	enc := base64.RawURLEncoding.EncodeToString
	rev := &countingReviewer{}
	a := &Authenticator{Reviewer: rev, TTL: time.Minute, RequireJWT: true}
	for _, payload := range []string{"not json", `["a"]`, `{"exp":"soon"}`} {
		tok := enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(payload)) + "." + enc([]byte("sig"))
		if _, err := a.Authenticate(context.Background(), tok); !errors.Is(err, ErrMalformedToken) {
			t.Fatalf("payload %q: %v; want malformed", payload, err)
		}
	}
	if rev.calls != 0 {
		t.Fatalf("%d reviews; want none", rev.calls)
	}
}

// An address that keeps failing is refused before anything is reviewed,
// until its failures leave the window; a token already known good still
// passes from it, and other addresses are not affected.
func TestFailedAuthenticationsPerAddressAreBudgeted(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakePassiveClock(time.Unix(1_800_000_000, 0))
	good := jwtWith(map[string]any{"sub": "good"})
	rev := &countingReviewer{users: map[string]User{good: {Name: "good"}}}
	a := &Authenticator{Reviewer: rev, TTL: time.Hour, RequireJWT: true, Clock: clk,
		Failures: &ratelimit.Local{Limit: 3, Window: time.Minute, Clock: clk}}
	ctx := context.Background()
	if _, err := a.AuthenticateFrom(ctx, good, "10.0.0.9"); err != nil {
		t.Fatal(err)
	}
	// Three failures of each kind the budget counts: a review that says no,
	// a token refused by its shape, one refused by its claims.
	for _, tok := range []string{jwtWith(map[string]any{"sub": "nobody"}), "garbage", jwtWith(map[string]any{"exp": 1})} {
		if _, err := a.AuthenticateFrom(ctx, tok, "10.0.0.9"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("%q: %v; want unauthenticated", tok, err)
		}
	}
	reviews := rev.calls
	var limited *FailureLimitError
	_, err := a.AuthenticateFrom(ctx, jwtWith(map[string]any{"sub": "another"}), "10.0.0.9")
	if !errors.As(err, &limited) || limited.Limit != 3 || limited.RetryAfter != time.Minute {
		t.Fatalf("4th failure: %v; want a FailureLimitError (3 per minute) retrying after a minute", err)
	}
	if rev.calls != reviews {
		t.Fatal("a review was made for an address over its failure budget")
	}
	if Reason(err) != "failure_limit" {
		t.Fatalf("Reason = %q", Reason(err))
	}
	if u, err := a.AuthenticateFrom(ctx, good, "10.0.0.9"); err != nil || u.Name != "good" {
		t.Fatalf("a token known good from the same address: %v", err)
	}
	if _, err := a.AuthenticateFrom(ctx, jwtWith(map[string]any{"sub": "another"}), "10.0.0.10"); errors.As(err, &limited) {
		t.Fatal("another address is limited too")
	}
	clk.SetTime(clk.Now().Add(time.Minute))
	if _, err := a.AuthenticateFrom(ctx, jwtWith(map[string]any{"sub": "late"}), "10.0.0.9"); errors.As(err, &limited) || err == nil {
		t.Fatalf("after the window: %v; want reviewed (and refused)", err)
	}
}
