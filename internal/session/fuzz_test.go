package session

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// referencePartNumber is the rule ParsePartNumber implements, written the
// obvious way: one to five ASCII digits whose value is in 1..10000.
func referencePartNumber(s string) (int, bool) {
	if !regexp.MustCompile(`^[0-9]{1,5}$`).MatchString(s) {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxParts {
		return 0, false
	}
	return n, true
}

// FuzzParsePartNumber: the parser agrees with the reference on every input,
// accepted or refused (a parser that refuses everything fails here).
func FuzzParsePartNumber(f *testing.F) {
	for _, s := range []string{"1", "10000", "0", "-1", "abc", "1.5", "10001", "", "٣", "00001", "09999", "+5", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := ParsePartNumber(s)
		wantN, wantOK := referencePartNumber(s)
		if n != wantN || ok != wantOK {
			t.Fatalf("ParsePartNumber(%q) = %d, %v; the rule says %d, %v", s, n, ok, wantN, wantOK)
		}
	})
}

var slugShape = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// FuzzSlug: a slug is never empty, holds only [a-z0-9-], has no leading,
// trailing or doubled '-', and is its own slug.
func FuzzSlug(f *testing.F) {
	for _, s := range []string{"Millennium Falcon", "  --Castle!!  ", "城堡", "", "!!!", "Castle (2)", "城堡 (12)", "a--b", "ÀÉÎ 42", "x (0)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, title string) {
		s := Slug(title)
		if !slugShape.MatchString(s) {
			t.Fatalf("Slug(%q) = %q: not [a-z0-9] words joined by single '-'", title, s)
		}
		if again := Slug(s); again != s {
			t.Fatalf("Slug(%q) = %q, but Slug(%q) = %q: not idempotent", title, s, s, again)
		}
		if strings.ContainsAny(strings.ToLower(title), "abcdefghijklmnopqrstuvwxyz0123456789") && s == FallbackSlug &&
			!strings.Contains(strings.ToLower(title), FallbackSlug) {
			t.Fatalf("Slug(%q) fell back to %q although the title has ASCII letters or digits", title, s)
		}
	})
}

// FuzzPartSizing: a part size is refused only when none would do; whenever
// one is chosen for a file, the file has at most 10,000 parts, every part but
// the last is exactly the part size (at least 5 MiB, at most the limit), the
// last is 1..partSize bytes, and the parts add up to the file.
func FuzzPartSizing(f *testing.F) {
	f.Add(int64(1), int64(0), false, 5*GiB)
	f.Add(5*MiB, 5*MiB, true, 5*GiB)
	f.Add(5*MiB+1, 5*MiB, true, 5*GiB)
	f.Add(5*1024*GiB, int64(0), false, 5*GiB)
	f.Add(80*GiB+1, 8*MiB, true, 64*MiB)
	f.Add(int64(100), int64(0), false, 6*MiB)        // a limit below the 8 MiB default
	f.Add(10000*6*MiB, int64(0), false, 6*MiB+12345) // the default rounded past a limit it fits under
	f.Fuzz(func(t *testing.T, size, requested int64, hasRequest bool, limit int64) {
		if size <= 0 || size > 5*1024*GiB || limit < MinPartSize {
			return // not a file S3 can hold, or a limit the configuration refuses
		}
		var req *int64
		if hasRequest {
			req = &requested
		}
		ps, err := ChoosePartSize(req, size, limit)
		if err != nil {
			// A refusal is right only when no part size would do: a refused
			// valid request, or a default refused where one fits, is a bug (a
			// function that refused everything would pass the checks below).
			lim := min(limit, MaxPartSize)
			switch {
			case hasRequest && requested >= MinPartSize && requested <= lim && PartCount(size, requested) <= MaxParts:
				t.Fatalf("ChoosePartSize(%d, %d, limit %d) refused a valid request: %v", requested, size, limit, err)
			case !hasRequest && max(MinPartSize, (size+MaxParts-1)/MaxParts) <= lim:
				t.Fatalf("ChoosePartSize(default, %d, limit %d) refused a file that fits in %d parts of at most %d bytes: %v",
					size, limit, MaxParts, lim, err)
			}
			return
		}
		if ps < MinPartSize || ps > min(limit, MaxPartSize) {
			t.Fatalf("part size %d outside [5 MiB, %d]", ps, min(limit, MaxPartSize))
		}
		if hasRequest && ps != requested {
			t.Fatalf("requested %d, chose %d", requested, ps)
		}
		count := PartCount(size, ps)
		if count < 1 || count > MaxParts {
			t.Fatalf("%d bytes in parts of %d: %d parts", size, ps, count)
		}
		var sum int64
		for n := 1; n <= count; n++ {
			p := ExpectedPartSize(size, ps, n)
			if n < count && p != ps || n == count && (p < 1 || p > ps) {
				t.Fatalf("part %d of %d is %d bytes (part size %d, file %d)", n, count, p, ps, size)
			}
			sum += p
		}
		if sum != size {
			t.Fatalf("parts add up to %d, file is %d", sum, size)
		}
	})
}
