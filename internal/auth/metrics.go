package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

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
func MetricsFilter(a *Authenticator, client kubernetes.Interface) func(logr.Logger, http.Handler) (http.Handler, error) {
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || token == "" {
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			u, err := a.Authenticate(r.Context(), token)
			switch {
			case errors.Is(err, ErrUnauthenticated):
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			case err != nil:
				log.Error(err, "metrics: token review failed")
				http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
				return
			}
			allowed, err := mayGet(r.Context(), client, u, r.URL.Path)
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
