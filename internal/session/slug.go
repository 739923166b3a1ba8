package session

import (
	"strconv"
	"strings"
)

// Slug is the title lowercased, each run of characters other than ASCII
// letters and digits turned into one '-', trimmed of '-' (CONTRACT §2).
func Slug(title string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(title) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	return b.String()
}

// SuggestSlug returns the slug of "<title> (N)" for the smallest N ≥ 1 for
// which taken reports false, so a client that auto-appends " (N)" lands on it.
func SuggestSlug(title string, taken func(slug string) bool) string {
	for n := 1; ; n++ {
		s := Slug(title + " (" + strconv.Itoa(n) + ")")
		if !taken(s) {
			return s
		}
	}
}
