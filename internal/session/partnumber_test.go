package session

import "testing"

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
