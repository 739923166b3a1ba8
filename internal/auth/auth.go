// Package auth authenticates bearer tokens with the Kubernetes TokenReview API
// and caches the answers briefly, keyed by a hash of the token (the token
// itself is never kept). A flood of made-up tokens costs the API server
// little: tokens that cannot be JWTs, or whose own claims say the review
// would refuse them, are refused locally; an address that keeps failing is
// refused before any review; concurrent reviews of one token are one review,
// the cache evicts the least recently used entries, and every review has a
// deadline.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"k8s.io/utils/clock"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/lru"

	"github.com/mocs-dev/upload-operator/internal/ratelimit"
)

// ErrUnauthenticated: the token is missing, malformed, expired or unknown.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrMalformedToken is an ErrUnauthenticated for a token refused without a
// review: it cannot be a JWT.
var ErrMalformedToken = fmt.Errorf("%w: not a JWT", ErrUnauthenticated)

// User is an authenticated caller.
type User struct {
	Name   string
	Groups []string
	Admin  bool
}

// Reviewer asks the API server about a token.
type Reviewer interface {
	Review(ctx context.Context, token string) (User, bool, error)
}

// TokenReviewer is the Reviewer backed by the TokenReview API.
type TokenReviewer struct {
	Client kubernetes.Interface
	// Audiences, when set, must be among the token's audiences.
	Audiences []string
}

// Review creates a TokenReview; ok is false when the API server does not
// accept the token.
func (r TokenReviewer) Review(ctx context.Context, token string) (User, bool, error) {
	tr, err := r.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: r.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return User{}, false, fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated {
		return User{}, false, nil
	}
	if len(r.Audiences) > 0 && !slices.ContainsFunc(tr.Status.Audiences, func(a string) bool { return slices.Contains(r.Audiences, a) }) {
		// An authenticator that ignores the requested audiences answers
		// with the token's own: not one of ours.
		return User{}, false, nil
	}
	return User{Name: tr.Status.User.Username, Groups: tr.Status.User.Groups}, true, nil
}

// Authenticator turns bearer tokens into users, with a TTL cache.
type Authenticator struct {
	Reviewer    Reviewer
	AdminGroups []string
	TTL         time.Duration
	// Clock ages cached reviews (nil: the real clock).
	Clock clock.PassiveClock
	// RequireJWT refuses, without asking the API server, tokens that do not
	// have a JWT's shape (ServiceAccount and OIDC tokens all do). Turn it off
	// for clusters whose authenticators take opaque tokens.
	RequireJWT bool
	// ReviewTimeout bounds one TokenReview (default 5s).
	ReviewTimeout time.Duration
	// CacheSize bounds the cache (default 10,000 entries); the least recently
	// used entry makes room for a new one.
	CacheSize int
	// Audiences, when set, refuse without a review a token whose "aud" claim
	// names none of them (the review asks for the same audiences).
	Audiences []string
	// Issuers, when set, refuse without a review a token whose "iss" claim
	// is not one of them (AUTH_ISSUERS).
	Issuers []string
	// Failures, when set, is the budget of failed authentications per client
	// address (AUTH_FAILURE_LIMIT): past it, a token that is not already known
	// good is refused with a FailureLimitError before anything else is
	// asked.
	Failures *ratelimit.Local

	once   sync.Once
	cache  *lru.Cache
	flight singleflight.Group
}

type entry struct {
	user    User
	ok      bool
	expires time.Time
}

// FailureLimitError refuses a client address that failed to authenticate
// too often: nothing was reviewed.
type FailureLimitError struct {
	Limit      int
	Window     time.Duration
	RetryAfter time.Duration
}

func (e *FailureLimitError) Error() string {
	return fmt.Sprintf("more than %d failed authentications in %s from this address", e.Limit, e.Window)
}

// Reason names why a token was refused, for metrics and logs.
func Reason(err error) string {
	var limit *FailureLimitError
	switch {
	case errors.As(err, &limit):
		return "failure_limit"
	case errors.Is(err, ErrMalformedToken):
		return "malformed"
	case errors.Is(err, ErrTokenExpired):
		return "expired"
	case errors.Is(err, ErrTokenNotYetValid):
		return "not_yet_valid"
	case errors.Is(err, ErrTokenAudience):
		return "audience"
	case errors.Is(err, ErrTokenIssuer):
		return "issuer"
	}
	return "rejected"
}

// Authenticate is AuthenticateFrom with no client address (no failure budget).
func (a *Authenticator) Authenticate(ctx context.Context, token string) (User, error) {
	return a.AuthenticateFrom(ctx, token, "")
}

// AuthenticateFrom returns the token's user, an ErrUnauthenticated, a
// *FailureLimitError, or an error when the API server could not be asked
// (not cached: the next call asks again). The order puts what costs nothing
// first: a token known good passes even from an address over its failure
// budget (many clients may share one); otherwise the budget, then the
// token's shape and claims, then the cache of refusals, and only then a
// TokenReview.
func (a *Authenticator) AuthenticateFrom(ctx context.Context, token, source string) (User, error) {
	if token == "" {
		return User{}, ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:])
	now := a.now()
	cached, hit := a.lru().Get(key)
	if hit {
		if e := cached.(entry); e.ok && now.Before(e.expires) {
			return e.user, nil
		}
	}
	if a.Failures != nil && source != "" {
		if full, wait := a.Failures.Full(source); full {
			return User{}, &FailureLimitError{Limit: a.Failures.Limit, Window: a.Failures.Window, RetryAfter: wait}
		}
	}
	u, err := a.authenticate(ctx, token, key, now, cached, hit)
	if errors.Is(err, ErrUnauthenticated) && a.Failures != nil && source != "" {
		a.Failures.Add(source)
	}
	return u, err
}

func (a *Authenticator) authenticate(ctx context.Context, token, key string, now time.Time, cached any, hit bool) (User, error) {
	if hit {
		if e := cached.(entry); now.Before(e.expires) {
			return a.answer(e)
		}
	}
	if a.RequireJWT && !jwtShaped(token) {
		return User{}, ErrMalformedToken
	}
	if c, ok := parseClaims(token); ok {
		if err := checkClaims(c, now, a.Audiences, a.Issuers); err != nil {
			return User{}, err
		}
	} else if a.RequireJWT {
		return User{}, ErrMalformedToken
	}
	// One review per token however many requests carry it at once; the
	// review runs on its own deadline, not on the first caller's context.
	v, err, _ := a.flight.Do(key, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.reviewTimeout())
		defer cancel()
		u, ok, err := a.Reviewer.Review(rctx, token)
		if err != nil {
			return nil, err
		}
		u.Admin = ok && slices.ContainsFunc(u.Groups, func(g string) bool { return slices.Contains(a.AdminGroups, g) })
		ttl := a.TTL
		if !ok {
			// A rejected token is remembered only briefly: it may be one that
			// was just issued to a slow client.
			ttl = min(ttl, 5*time.Second)
		}
		e := entry{user: u, ok: ok, expires: a.now().Add(ttl)}
		if ttl > 0 {
			a.lru().Add(key, e)
		}
		return e, nil
	})
	if err != nil {
		return User{}, err
	}
	return a.answer(v.(entry))
}

func (a *Authenticator) answer(e entry) (User, error) {
	if !e.ok {
		return User{}, ErrUnauthenticated
	}
	return e.user, nil
}

func (a *Authenticator) lru() *lru.Cache {
	a.once.Do(func() {
		size := a.CacheSize
		if size <= 0 {
			size = 10000
		}
		a.cache = lru.New(size)
	})
	return a.cache
}

func (a *Authenticator) reviewTimeout() time.Duration {
	if a.ReviewTimeout > 0 {
		return a.ReviewTimeout
	}
	return 5 * time.Second
}

func (a *Authenticator) now() time.Time {
	if a.Clock != nil {
		return a.Clock.Now()
	}
	return time.Now()
}

// jwtShaped reports whether token looks like a JWT: three base64url parts, the
// first a JSON object naming an algorithm. Anything else cannot be a
// ServiceAccount or OIDC token and is not worth a TokenReview.
func jwtShaped(token string) bool {
	if len(token) > 16<<10 {
		return false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return false
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(header, &h) == nil && h.Alg != ""
}

// CanAccess reports whether u may act on a session owned by owner.
func (u User) CanAccess(owner string) bool { return u.Admin || u.Name == owner }
