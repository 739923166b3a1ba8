// Package localenv starts the real services the operator depends on, on
// loopback, for tests and `make dev`: a Kubernetes control plane (envtest's
// etcd and kube-apiserver, built from source into bin/k8s), a versitygw S3
// server, and a private PostgreSQL database and Redis key prefix on the
// machine's servers. Nothing here is a mock.
package localenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
)

// K8sVersion is the Kubernetes version built by hack/build-k8s.sh.
const K8sVersion = "1.37.2"

// VersitygwVersion is the S3 server version the Makefile installs.
const VersitygwVersion = "v1.8.0"

// RepoRoot finds the module root (the directory holding go.mod) from the
// working directory, so tests in any package find bin/ and config/.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "PROJECT")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("localenv: repository root (go.mod + PROJECT) not found above the working directory")
		}
		dir = parent
	}
}

// K8sAssets is the directory with etcd and kube-apiserver: $KUBEBUILDER_ASSETS
// or bin/k8s/<version>-<os>-<arch> under the repository root.
func K8sAssets() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	d := filepath.Join(root, "bin", "k8s", fmt.Sprintf("%s-%s-%s", K8sVersion, runtime.GOOS, runtime.GOARCH))
	if _, err := os.Stat(filepath.Join(d, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("localenv: %s missing: run `make k8s` (or `make test`) first", d)
	}
	return d, nil
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
