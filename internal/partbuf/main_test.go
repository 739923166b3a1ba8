package partbuf

import (
	"testing"

	"github.com/mocs-dev/upload-operator/internal/leakcheck"
)

// TestMain fails the run if a test leaves a goroutine of this package running.
func TestMain(m *testing.M) { leakcheck.Main(m) }
