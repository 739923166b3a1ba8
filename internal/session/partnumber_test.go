package session

import (
	"strconv"
	"testing"
)

func TestParsePartNumber(t *testing.T) {
	t.Parallel()
	cases := map[string]int{ // 0 = invalid
		"1": 1, "10000": 10000, "42": 42, "01": 1,
		"0": 0, "-1": 0, "abc": 0, "1.5": 0, "10001": 0, "": 0, "+1": 0, " 1": 0, "1e3": 0, "0x10": 0,
		"99999999999999999999": 0, "１": 0,
	}
	for in, want := range cases {
		got, ok := ParsePartNumber(in)
		if (want == 0) == ok || (ok && got != want) {
			t.Errorf("ParsePartNumber(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

// FuzzParsePartNumber: whatever the path segment, the parser accepts exactly
// the canonical decimals 1..10000 (with optional leading zeros) and nothing else.
func FuzzParsePartNumber(f *testing.F) {
	for _, s := range []string{"1", "10000", "0", "-1", "abc", "1.5", "10001", "", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := ParsePartNumber(s)
		if !ok {
			return
		}
		if n < 1 || n > 10000 {
			t.Fatalf("%q accepted as %d", s, n)
		}
		back, err := strconv.Atoi(s)
		if err != nil || back != n || s[0] == '+' || s[0] == '-' {
			t.Fatalf("%q accepted as %d but is not a plain decimal", s, n)
		}
	})
}
