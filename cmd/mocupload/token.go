package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/mocs-dev/upload-operator/pkg/client"
)

// serviceAccountToken requests tokens for ns/name through the current
// kubeconfig (TokenRequest, one hour), renewing them before they expire.
func serviceAccountToken(ctx context.Context, ns, name string) (client.TokenSource, error) {
	cfg, err := config.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var token string
	var expires time.Time
	get := func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if token != "" && time.Until(expires) > 5*time.Minute {
			return token, nil
		}
		exp := int64(3600)
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
			&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
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
