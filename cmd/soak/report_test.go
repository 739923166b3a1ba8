package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The committed plots are what hack/plot draws from the committed summaries,
// byte for byte: the chart description (internal/testenv/chart) and
// hack/plot's reading of it stay one contract, and a field one side renames
// shows here as a plot that changed.
func TestTheSoakPlotsAreTheirSummaries(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(savedDir(root), "seed-*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no saved summaries (%v)", err)
	}
	for _, p := range paths[:1] { // one is enough to hold the contract; each takes a second
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := &summary{}
		if err := json.Unmarshal(raw, s); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "plot.png")
		if err := s.chart().Save(context.Background(), root, out); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(out)
		want, err := os.ReadFile(p[:len(p)-len(".json")] + ".png")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s drawn again differs from the committed plot (%d bytes against %d); go run ./cmd/soak -render redraws them", p, len(got), len(want))
		}
	}
}
