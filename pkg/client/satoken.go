package client

import (
	"context"
	"errors"
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

// ErrNoAudience refuses to request a ServiceAccount token without an audience.
var ErrNoAudience = errors.New("a ServiceAccount token for the upload API needs an audience (" + DefaultAudience +
	" unless the operator's AUTH_AUDIENCES says otherwise); a token without one is a key to the Kubernetes API")

// ServiceAccountToken requests tokens of the ServiceAccount ns/name for
// audience through cfg (the TokenRequest API, one hour each), renewing them
// five minutes before they expire. An empty audience is refused: it would
// ask for a token of the API server's own audience, a key to the Kubernetes
// API with the ServiceAccount's RBAC, and sending that to the upload API
// hands it to whoever can read the upload API's traffic or logs.
func ServiceAccountToken(ctx context.Context, cfg *rest.Config, ns, name, audience string) (TokenSource, error) {
	if audience == "" {
		return nil, ErrNoAudience
	}
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
		spec := authv1.TokenRequestSpec{ExpirationSeconds: &exp, Audiences: []string{audience}}
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
