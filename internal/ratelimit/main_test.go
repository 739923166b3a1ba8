package ratelimit

import (
	"testing"

	"github.com/mocs-dev/upload-operator/internal/testenv"
)

// TestMain fails the run if a test leaves a goroutine of this package running.
func TestMain(m *testing.M) { testenv.Main(m, testenv.Needs{}, nil) }
