package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// DefaultAudience is the audience the operator accepts tokens for unless it
// is configured otherwise (AUTH_AUDIENCES). A token bound to it is good for the
// upload API only, not for the Kubernetes API.
const DefaultAudience = "uploads.mocs.dev"

// ServiceAccountToken requests tokens of the ServiceAccount ns/name for
// audience through cfg (the TokenRequest API, one hour each), renewing them
// five minutes before they expire. An empty audience asks for the API
// server's own, which an operator accepts only if configured to.
func ServiceAccountToken(ctx context.Context, cfg *rest.Config, ns, name, audience string) (TokenSource, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var (
		mu      sync.Mutex
		token   string
		expires time.Time
	)
	get := func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if token != "" && time.Until(expires) > 5*time.Minute {
			return token, nil
		}
		exp := int64(3600)
		spec := authv1.TokenRequestSpec{ExpirationSeconds: &exp}
		if audience != "" {
			spec.Audiences = []string{audience}
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			return "", fmt.Errorf("token for %s/%s: %w", ns, name, err)
		}
		token, expires = tr.Status.Token, tr.Status.ExpirationTimestamp.Time
		return token, nil
	}
	if _, err := get(ctx); err != nil {
		return nil, err
	}
	return get, nil
}
