package session

import (
	"slices"
	"strings"
	"testing"
)

func TestSummarizeMissing(t *testing.T) {
	t.Parallel()
	many := map[string][]int{}
	for f := range 3 {
		var parts []int
		for n := 1; n <= 10000; n += 2 { // every other part: no ranges to shorten it
			parts = append(parts, n)
		}
		many[strings.Repeat(string(rune('a'+f)), 36)] = parts
	}
	cases := []struct {
		name    string
		missing map[string][]int
		want    string
	}{
		{"ranges", map[string][]int{"f1": {9, 1, 2, 3, 4, 5}, "f0": {7}}, "7 part(s) missing in 2 file(s); f0: 7; f1: 1-5, 9"},
		{"one part", map[string][]int{"f": {3}}, "1 part(s) missing in 1 file(s); f: 3"},
		{"nothing", map[string][]int{}, "0 part(s) missing in 0 file(s)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := SummarizeMissing(tc.missing); got != tc.want {
				t.Fatalf("= %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("15,000 missing parts fit a condition", func(t *testing.T) {
		t.Parallel()
		got := SummarizeMissing(many)
		if len(got) > MaxMissingSummary || !strings.HasPrefix(got, "15000 part(s) missing in 3 file(s)") || !strings.HasSuffix(got, "9 …") ||
			!strings.Contains(got, strings.Repeat("a", 36)+": 1, 3, 5, 7, ") {
			t.Fatalf("%d bytes: %.120q…%q", len(got), got, got[max(0, len(got)-20):])
		}
	})
}

func TestTruncateMissingKeepsTheFirstPartsAndTheCounts(t *testing.T) {
	t.Parallel()
	many := make([]int, 0, 10000)
	for n := 10000; n >= 1; n-- {
		many = append(many, n)
	}
	listed, counts, truncated := TruncateMissing(map[string][]int{"big": many, "small": {3, 1}}, 100)
	if !truncated || len(listed["big"]) != 100 || listed["big"][0] != 1 || listed["big"][99] != 100 || counts["big"] != 10000 {
		t.Fatalf("big: %d listed (%v…), count %d, truncated %v", len(listed["big"]), listed["big"][:3], counts["big"], truncated)
	}
	if !slices.Equal(listed["small"], []int{1, 3}) || counts["small"] != 2 {
		t.Fatalf("small: %v, count %d", listed["small"], counts["small"])
	}
	if _, _, truncated := TruncateMissing(map[string][]int{"small": {1}}, 100); truncated {
		t.Fatal("truncated with nothing left out")
	}
}
