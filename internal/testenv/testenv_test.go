package testenv_test

import (
	"os/exec"
	"strings"
	"testing"
)

// What ships is what the manager imports: none of the test support, nor the
// modules only tests and tools need. Grouping the support under
// internal/testenv is what keeps a reader (and this test) able to tell.
func TestTheManagerImportsNoTestSupport(t *testing.T) {
	t.Parallel()
	for _, tags := range []string{"", "failpoints"} {
		out, err := exec.Command("go", "list", "-tags", tags, "-deps", "github.com/mocs-dev/upload-operator/cmd/manager").Output()
		if err != nil {
			t.Fatalf("go list -tags %q: %v", tags, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, banned := range []string{"/internal/testenv", "go.uber.org/goleak", "github.com/Shopify/toxiproxy",
				"github.com/anishathalye/porcupine", "gonum.org/v1/plot", "github.com/creack/pty"} {
				if strings.Contains(dep, banned) {
					t.Errorf("the manager (tags %q) imports %s", tags, dep)
				}
			}
		}
	}
}
