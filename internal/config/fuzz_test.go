package config

import (
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"
)

var sizeParts = regexp.MustCompile(`^([0-9]+)\s*([A-Za-z]*)$`)

// FuzzParseBytes: a size is accepted exactly when it is digits with one of
// the known units and fits in an int64, and its value is the exact product
// (computed here without overflow).
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"1048576", "256MiB", "5GiB", "10MB", " 7 KiB ", "-1", "1.5GiB", "9223372036854775807", "9223372036854775807KiB", "8589934592GiB", "0", "12XB"} {
		f.Add(s)
	}
	units := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseBytes(s)
		m := sizeParts.FindStringSubmatch(strings.TrimSpace(s))
		var want *big.Int
		if m != nil {
			if mult, ok := units[m[2]]; ok {
				n, _ := new(big.Int).SetString(m[1], 10)
				want = n.Mul(n, big.NewInt(mult))
				if !want.IsInt64() {
					want = nil
				}
			}
		}
		switch {
		case want == nil && err == nil:
			t.Fatalf("ParseBytes(%q) = %d; want an error", s, got)
		case want != nil && err != nil:
			t.Fatalf("ParseBytes(%q): %v; want %s", s, err, want)
		case want != nil && got != want.Int64():
			t.Fatalf("ParseBytes(%q) = %d; want %s", s, got, want)
		}
	})
}

// FuzzDurationsAndRates: whatever a duration or rate variable holds, loading
// either fails with an error naming the variable or yields a positive value
// (never a zero or negative timeout, window or count that would disable a
// limit).
func FuzzDurationsAndRates(f *testing.F) {
	for _, s := range []string{"30s", "5m", "0", "-1s", "1h30m", "10/1m", "0/1m", "10/0s", "10/-1m", "x/y", "1/", "/1m", "99999999999999999999/1m", "1/1ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, name := range []string{"UPLOAD_PART_TIMEOUT", "STALE_LOCK_AFTER"} {
			c, err := Load(lookup(map[string]string{name: v}))
			if err != nil {
				if !strings.Contains(err.Error(), name) {
					t.Fatalf("%s=%q: error %q does not name the variable", name, v, err)
				}
				continue
			}
			d := map[string]time.Duration{"UPLOAD_PART_TIMEOUT": c.UploadPartTimeout, "STALE_LOCK_AFTER": c.StaleLockAfter}[name]
			if d <= 0 {
				t.Fatalf("%s=%q loaded as %s", name, v, d)
			}
		}
		c, err := Load(lookup(map[string]string{"FINALIZE_RATE_LIMIT": v}))
		if err != nil {
			if !strings.Contains(err.Error(), "FINALIZE_RATE_LIMIT") {
				t.Fatalf("FINALIZE_RATE_LIMIT=%q: error %q does not name the variable", v, err)
			}
			return
		}
		if c.FinalizeLimit <= 0 || c.FinalizeWindow <= 0 {
			t.Fatalf("FINALIZE_RATE_LIMIT=%q loaded as %d per %s", v, c.FinalizeLimit, c.FinalizeWindow)
		}
	})
}
