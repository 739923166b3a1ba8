package session

import (
	"regexp"
	"strconv"
	"strings"
)

// FallbackSlug is the slug of a title that has no ASCII letter or digit
// ("城堡", "!!!"); conflicts then follow the usual rule: moc-1, moc-2, ….
const FallbackSlug = "moc"

// Slug is the title lowercased, each run of characters other than ASCII
// letters and digits turned into one '-', trimmed of '-'; FallbackSlug when
// that is empty. A title that is such a title with " (N)" appended (the
// auto-append flow after a conflict) gets FallbackSlug-N, so the flow lands on
// the suggested slug for these titles too.
func Slug(title string) string {
	if m := counterSuffix.FindStringSubmatch(title); m != nil && asciiSlug(m[1]) == "" {
		return FallbackSlug + "-" + m[2]
	}
	if s := asciiSlug(title); s != "" {
		return s
	}
	return FallbackSlug
}

var counterSuffix = regexp.MustCompile(`^(.*) \(([0-9]+)\)$`)

func asciiSlug(title string) string {
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
