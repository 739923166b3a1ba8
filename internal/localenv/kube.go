package localenv

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Kube is a running control plane.
type Kube struct {
	Env    *envtest.Environment
	Config *rest.Config
}

// StartKube starts etcd and kube-apiserver from bin/k8s and installs the CRDs
// in config/crd/bases.
func StartKube(ctx context.Context) (*Kube, error) {
	assets, err := K8sAssets()
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start control plane from %s: %w", assets, err)
	}
	k := &Kube{Env: env, Config: cfg}
	if err := k.waitOpenAPI(ctx, time.Minute); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return k, nil
}

// waitOpenAPI waits until the API server publishes the CRD's OpenAPI schema:
// kubectl validates manifests against it, and right after start-up it answers
// "failed to download openapi" for a moment.
func (k *Kube) waitOpenAPI(ctx context.Context, timeout time.Duration) error {
	cs, err := kubernetes.NewForConfig(k.Config)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := cs.Discovery().RESTClient().Get().AbsPath("/openapi/v3/apis/uploads.mocs.dev/v1alpha1").Do(ctx).Error()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("OpenAPI schema of uploads.mocs.dev/v1alpha1 not served after %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the control plane.
func (k *Kube) Stop() error { return k.Env.Stop() }

// AdminKubeconfig returns a kubeconfig for a cluster-admin user (system:masters).
func (k *Kube) AdminKubeconfig() ([]byte, error) {
	u, err := k.Env.AddUser(envtest.User{Name: "dev-admin-user", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	return u.KubeConfig()
}
