package webhook

import (
	"testing"

	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// Every finalize outcome has an HTTP answer: a new one added to
// uploads.ClassifyFinalize fails here until it gets its row.
func TestEveryFinalizeOutcomeHasAnAnswer(t *testing.T) {
	t.Parallel()
	for _, o := range uploads.Outcomes() {
		if finalizeAnswers[o] == nil {
			t.Errorf("finalize outcome %s has no HTTP answer in finalizeAnswers", o)
		}
	}
}
