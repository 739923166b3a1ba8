package main

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/mocs-dev/upload-operator/pkg/client"
)

// serviceAccountToken requests tokens for ns/name, bound to audience, through
// the current kubeconfig, renewing them before they expire.
func serviceAccountToken(ctx context.Context, ns, name, audience string) (client.TokenSource, error) {
	cfg, err := config.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return client.ServiceAccountToken(ctx, cfg, ns, name, audience)
}
