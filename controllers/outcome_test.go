package controllers

import (
	"testing"

	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// Every finalize outcome has a reconciler step: a new one added to
// uploads.ClassifyFinalize fails here until it gets its row.
func TestEveryFinalizeOutcomeHasAStep(t *testing.T) {
	t.Parallel()
	for _, o := range uploads.Outcomes() {
		if finalizeSteps[o] == nil {
			t.Errorf("finalize outcome %s has no step in finalizeSteps", o)
		}
	}
}
