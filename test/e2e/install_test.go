package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

const crdName = "customresourcedefinition.apiextensions.k8s.io/uploadsessions.uploads.mocs.dev"

// The kubebuilder-style targets work as their help says: install and
// uninstall the CRD, deploy and undeploy config/default with the image IMG,
// and render it into one file. They run against a control plane of their own:
// uninstall and undeploy delete the CRD, which the rest of the suite needs.
// None of them may write to config/ (deploy sets the image on a copy).
func TestMakeDeploymentTargets(t *testing.T) {
	ctx := context.Background()
	kube, err := localenv.StartKube(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := kube.Stop(); err != nil {
			t.Errorf("stop the control plane: %v", err)
		}
	})
	kc, err := kube.AdminKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	must(t, os.WriteFile(kubeconfig, kc, 0o600))
	env := envWithout(os.Environ(), "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
	env = append(env, "KUBECONFIG="+kubeconfig)
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = repo, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mustRun := func(name string, args ...string) string {
		t.Helper()
		out, err := run(name, args...)
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return out
	}
	before := configDigest(t)

	// StartKube installed the CRD; the targets take it away and bring it back.
	mustRun("make", "uninstall")
	if out, err := run("kubectl", "get", crdName); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("the CRD is still there after make uninstall: %v\n%s", err, out)
	}
	mustRun("make", "install")
	mustRun("kubectl", "wait", "--for=condition=Established", "--timeout=60s", crdName)

	const img = "example.test/upload-operator:v9"
	mustRun("make", "deploy", "IMG="+img)
	if got := mustRun("kubectl", "-n", "upload-operator-system", "get", "deployment", "upload-operator-controller-manager",
		"-o", "jsonpath={.spec.template.spec.containers[0].image}"); got != img {
		t.Errorf("deployed image %q, want %q", got, img)
	}
	mustRun("kubectl", "get", "clusterrole", "upload-operator-manager-role", "upload-operator-uploadsession-editor-role")
	mustRun("kubectl", "-n", "upload-operator-system", "get", "role", "upload-operator-leader-election-role")

	installer := filepath.Join(dir, "install.yaml")
	mustRun("make", "build-installer", "IMG=example.test/upload-operator:v10", "INSTALLER="+installer)
	b, err := os.ReadFile(installer)
	must(t, err)
	if !strings.Contains(string(b), "image: example.test/upload-operator:v10\n") {
		t.Errorf("%s does not use the image IMG", installer)
	}
	if out := mustRun("kubectl", "apply", "--dry-run=server", "-f", installer); !strings.Contains(out,
		"deployment.apps/upload-operator-controller-manager configured (server dry run)") {
		t.Errorf("server dry run of the installer:\n%s", out)
	}
	if out, err := run("git", "check-ignore", "-q", "dist/install.yaml"); err != nil {
		t.Errorf("dist/install.yaml is not git-ignored: %v %s", err, out)
	}

	// Without kube-controller-manager the namespace would stay Terminating, so
	// kubectl is told not to wait for it.
	mustRun("make", "undeploy", "KUBECTL=kubectl --wait=false")
	mustRun("kubectl", "wait", "--for=delete", "--timeout=60s", crdName)
	if out, err := run("kubectl", "-n", "upload-operator-system", "get", "deployment,role", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("left after make undeploy: %v\n%s", err, out)
	}
	if out, err := run("kubectl", "get", "clusterrole", "upload-operator-manager-role"); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("the manager's ClusterRole is still there after make undeploy: %v\n%s", err, out)
	}
	mustRun("make", "uninstall") // nothing left to delete: not an error

	if after := configDigest(t); !bytes.Equal(before, after) {
		t.Errorf("the targets changed files under config/:\n%s", mustRun("git", "status", "--short", "--", "config"))
	}
}

// configDigest hashes the names and contents of every file under config/.
func configDigest(t *testing.T) []byte {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(filepath.Join(repo, "config"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path) //nolint:gosec // the repository's own files
		if err != nil {
			return err
		}
		h.Write([]byte(path + "\x00"))
		h.Write(b)
		h.Write([]byte{0})
		return nil
	})
	must(t, err)
	return h.Sum(nil)
}

// envWithout drops the named variables: make's own, inherited from `make
// test`, would point the nested make at a job server it cannot reach.
func envWithout(env []string, names ...string) []string {
	var out []string
outer:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}
