package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/go-logr/logr"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// MetricsFilter guards the metrics endpoint as kubebuilder's scaffold does:
// the caller's bearer token must be accepted by the API server (TokenReview,
// through a's cache) and the caller allowed to `get` the non-resource URL
// /metrics (SubjectAccessReview). controller-runtime's own filter does the
// same through k8s.io/apiserver, which would double the operator's binary (43
// to 82 MB, with its resident pages counted against the memory budget); this
// is the same two questions with the client the operator already has.
//
// Both answers are cached (the token's for a's TTL, the access decision for
// a minute), and client should be one of the scrapers' own, with its own
// QPS: then a flood of logins to the upload API cannot starve the scrapes,
// and a scraper every 15 s costs the API server nothing after the first.
func MetricsFilter(a *Authenticator, client kubernetes.Interface) func(logr.Logger, http.Handler) (http.Handler, error) {
	decisions := &accessCache{client: client, ttl: time.Minute, clock: a.now}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || token == "" {
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			u, err := a.AuthenticateFrom(r.Context(), token, clientAddress(r))
			var limited *FailureLimitError
			switch {
			case errors.As(err, &limited):
				w.Header().Set("Retry-After", fmt.Sprint(int(limited.RetryAfter.Seconds())+1))
				http.Error(w, "Too Many Requests", http.StatusTooManyRequests)
				return
			case errors.Is(err, ErrUnauthenticated):
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			case err != nil:
				log.Error(err, "metrics: token review failed")
				http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
				return
			}
			allowed, err := decisions.mayGet(r.Context(), u, r.URL.Path)
			if err != nil {
				log.Error(err, "metrics: access review failed")
				http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
				return
			}
			if !allowed {
				http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=get, resource=, subresource=)", u.Name), http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
		}), nil
	}
}

// accessCache remembers SubjectAccessReview answers briefly, by user,
// groups and path; one review per key at a time.
type accessCache struct {
	client kubernetes.Interface
	ttl    time.Duration
	clock  func() time.Time

	mu      sync.Mutex
	answers map[string]accessAnswer
	flight  singleflight.Group
}

type accessAnswer struct {
	allowed bool
	expires time.Time
}

// maxAccessAnswers bounds the cache: scrapers are few; past this many keys
// it starts over rather than grow.
const maxAccessAnswers = 1024

func (c *accessCache) mayGet(ctx context.Context, u User, path string) (bool, error) {
	key := u.Name + "\x00" + strings.Join(u.Groups, "\x00") + "\x00" + path
	c.mu.Lock()
	if a, ok := c.answers[key]; ok && c.clock().Before(a.expires) {
		c.mu.Unlock()
		return a.allowed, nil
	}
	c.mu.Unlock()
	v, err, _ := c.flight.Do(key, func() (any, error) {
		allowed, err := mayGet(context.WithoutCancel(ctx), c.client, u, path)
		if err != nil {
			return false, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.answers == nil || len(c.answers) >= maxAccessAnswers {
			c.answers = map[string]accessAnswer{}
		}
		c.answers[key] = accessAnswer{allowed: allowed, expires: c.clock().Add(c.ttl)}
		return allowed, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// clientAddress is the request's remote address without its port.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// mayGet asks the API server whether u may `get` the non-resource URL path.
func mayGet(ctx context.Context, client kubernetes.Interface, u User, path string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sar, err := client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User: u.Name, Groups: u.Groups,
			NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: "get"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("subject access review: %w", err)
	}
	return sar.Status.Allowed, nil
}
