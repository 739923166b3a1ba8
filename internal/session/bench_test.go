package session

import "testing"

func BenchmarkSlug(b *testing.B) {
	for b.Loop() {
		_ = Slug("Millennium Falcon — Ultimate Collector Series (75192) v2!")
	}
}

func BenchmarkSuggestSlug(b *testing.B) {
	taken := map[string]bool{"castle": true, "castle-1": true, "castle-2": true}
	for b.Loop() {
		_ = SuggestSlug("Castle", func(s string) bool { return taken[s] })
	}
}

func BenchmarkParsePartNumber(b *testing.B) {
	for b.Loop() {
		_, _ = ParsePartNumber("9999")
	}
}
