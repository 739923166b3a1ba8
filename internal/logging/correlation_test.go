package logging

import (
	"strings"
	"testing"
)

func TestValidCorrelationID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"abc-123":                              true,
		"req:7f3a.b_c":                         true,
		"3f6e9a2c-8d1b-4c5e-9f0a-1b2c3d4e5f60": true,
		"":                                     false,
		"a b":                                  false,
		"evil\n{\"level\":\"error\",\"msg\":\"forged\"}": false,
		strings.Repeat("a", 128):                         true,
		strings.Repeat("a", 129):                         false,
		"ünïcode":                                        false,
	} {
		if got := ValidCorrelationID(id); got != want {
			t.Errorf("ValidCorrelationID(%q) = %v, want %v", id, got, want)
		}
	}
}
