// Package auth authenticates bearer tokens with the Kubernetes TokenReview API
// and caches the answers briefly, keyed by a hash of the token (the token
// itself is never kept).
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ErrUnauthenticated: the token is missing, malformed, expired or unknown.
var ErrUnauthenticated = errors.New("unauthenticated")

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
	return User{Name: tr.Status.User.Username, Groups: tr.Status.User.Groups}, true, nil
}

// Authenticator turns bearer tokens into users, with a TTL cache.
type Authenticator struct {
	Reviewer    Reviewer
	AdminGroups []string
	TTL         time.Duration
	Now         func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]entry
}

type entry struct {
	user    User
	ok      bool
	expires time.Time
}

// maxEntries bounds the cache so a flood of random tokens cannot grow it.
const maxEntries = 10000

// Authenticate returns the token's user, ErrUnauthenticated, or an error when
// the API server could not be asked (not cached: the next call asks again).
func (a *Authenticator) Authenticate(ctx context.Context, token string) (User, error) {
	if token == "" {
		return User{}, ErrUnauthenticated
	}
	key := sha256.Sum256([]byte(token))
	now := a.now()
	a.mu.Lock()
	e, hit := a.cache[key]
	a.mu.Unlock()
	if hit && now.Before(e.expires) {
		if !e.ok {
			return User{}, ErrUnauthenticated
		}
		return e.user, nil
	}
	u, ok, err := a.Reviewer.Review(ctx, token)
	if err != nil {
		return User{}, err
	}
	u.Admin = ok && slices.ContainsFunc(u.Groups, func(g string) bool { return slices.Contains(a.AdminGroups, g) })
	if a.TTL > 0 {
		ttl := a.TTL
		if !ok {
			// A rejected token is remembered only briefly: it may be one that
			// was just issued to a slow client.
			ttl = min(ttl, 5*time.Second)
		}
		a.mu.Lock()
		if a.cache == nil || len(a.cache) >= maxEntries {
			a.cache = map[[32]byte]entry{}
		}
		a.cache[key] = entry{user: u, ok: ok, expires: now.Add(ttl)}
		a.mu.Unlock()
	}
	if !ok {
		return User{}, ErrUnauthenticated
	}
	return u, nil
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// CanAccess reports whether u may act on a session owned by owner.
func (u User) CanAccess(owner string) bool { return u.Admin || u.Name == owner }
