package localenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
func StartKube(ctx context.Context) (*Kube, error) { return StartKubeWith(ctx, KubeOptions{}) }

// KubeOptions tune the control plane.
type KubeOptions struct {
	// ServiceAccountAdmission turns back on the admission plugin envtest
	// disables: it gives Pods their ServiceAccount's projected token, which a
	// real node (Cluster) needs and envtest alone does not.
	ServiceAccountAdmission bool
}

// StartKubeWith is StartKube with options.
func StartKubeWith(ctx context.Context, o KubeOptions) (*Kube, error) {
	assets, err := K8sAssets()
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	launchers, err := withParentDeathSignal(assets)
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
	// Explicit paths: envtest would otherwise prefer $KUBEBUILDER_ASSETS.
	env.ControlPlane.GetAPIServer().Path = filepath.Join(launchers, "kube-apiserver")
	env.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(launchers, "etcd")}
	if o.ServiceAccountAdmission {
		env.ControlPlane.GetAPIServer().Configure().Set("disable-admission-plugins", "")
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

// withParentDeathSignal returns a directory of etcd and kube-apiserver
// launchers that run the binaries in assets with a parent-death signal, so a
// test run that is killed (and cannot stop its control plane) leaves neither
// running. envtest starts them in their own process group and offers no hook
// to set the signal itself. Without setpriv it returns assets unchanged.
func withParentDeathSignal(assets string) (string, error) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return assets, nil //nolint:nilerr // no setpriv: the binaries run as they are
	}
	dir := filepath.Join(assets, "with-pdeathsig")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		script := fmt.Sprintf("#!/bin/sh\nexec %s --pdeathsig KILL -- %s \"$@\"\n", setpriv, filepath.Join(assets, name))
		path := filepath.Join(dir, name)
		if old, err := os.ReadFile(path); err == nil && string(old) == script { //nolint:gosec // our own bin/ directory
			continue
		}
		tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
		if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil { //nolint:gosec // an executable launcher
			return "", err
		}
		// Several test packages start control planes at once: rename is atomic.
		if err := os.Rename(tmp, path); err != nil {
			return "", err
		}
	}
	return dir, nil
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

// ServiceAccountToken makes the namespace and ServiceAccount ns/name when
// they are missing and returns a token of it valid for ttl, bound to
// audience ("": the API server's own), with the user name the API server
// gives it: how make dev, the tests and the tools act as in-cluster callers.
func ServiceAccountToken(ctx context.Context, cs kubernetes.Interface, ns, name, audience string, ttl time.Duration) (user, token string, err error) {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", "", fmt.Errorf("create namespace %s: %w", ns, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", "", fmt.Errorf("create serviceaccount %s/%s: %w", ns, name, err)
	}
	exp := int64(ttl.Seconds())
	spec := authv1.TokenRequestSpec{ExpirationSeconds: &exp}
	if audience != "" {
		spec.Audiences = []string{audience}
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return "", "", fmt.Errorf("token for %s/%s: %w", ns, name, err)
	}
	return "system:serviceaccount:" + ns + ":" + name, tr.Status.Token, nil
}
