package v1alpha1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

// TestGeneratedFilesAreCurrent regenerates the deepcopy code and the CRD from
// the markers into a temporary directory and fails when the committed copies
// differ: `make generate manifests` was not run after changing the types.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	root, err := localenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	gen := filepath.Join(root, "bin", "controller-gen-v0.23.0")
	if _, err := os.Stat(gen); err != nil {
		t.Fatalf("%s missing: run `make tools`", gen)
	}
	out := t.TempDir()
	for _, args := range [][]string{
		{"object", "paths=./api/...", "output:object:dir=" + out},
		{"crd", "paths=./api/...", "output:crd:dir=" + out},
	} {
		cmd := exec.Command(gen, args...)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("controller-gen %v: %v\n%s", args, err, b)
		}
	}
	for generated, committed := range map[string]string{
		"zz_generated.deepcopy.go":             "api/v1alpha1/zz_generated.deepcopy.go",
		"uploads.mocs.dev_uploadsessions.yaml": "config/crd/bases/uploads.mocs.dev_uploadsessions.yaml",
	} {
		want, err := os.ReadFile(filepath.Join(out, generated))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, committed))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `make generate manifests` and commit the result", committed)
		}
	}
}
