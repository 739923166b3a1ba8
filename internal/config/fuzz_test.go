package config

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	sizeParts = regexp.MustCompile(`^([0-9]+)\s*([A-Za-z]*)$`)
	// quantityParts is the Kubernetes quantity grammar, a digit required.
	quantityParts = regexp.MustCompile(`^\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$`)
)

// FuzzParseBytes: a size is accepted exactly when it is digits with one of
// the known units and fits in an int64, or a Kubernetes quantity (exponent
// within ±30; a binary one with at most 9 decimal places) that is a whole
// number of bytes below 2^63-1; its value is the exact one (computed here
// with rationals, without overflow).
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"1048576", "256MiB", "5GiB", "10MB", " 7 KiB ", "-1", "1.5GiB", "9223372036854775807",
		"9223372036854775807KiB", "8589934592GiB", "0", "12XB", "256Mi", "1.5Gi", "500M", "1e9", "100m", "1.5", "-1Ki",
		"8Ei", "7Ei", "0.0009765625Ki", "9999999999.99999999m", "1e4294967296", "1E", "Ki", ".", "+.5Ki", "1.e3", "1e-3"} {
		f.Add(s)
	}
	units := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseBytes(s)
		trimmed := strings.TrimSpace(s)
		var want *big.Int
		if m := sizeParts.FindStringSubmatch(trimmed); m != nil {
			if mult, ok := units[m[2]]; ok {
				n, _ := new(big.Int).SetString(m[1], 10)
				want = n.Mul(n, big.NewInt(mult))
				if !want.IsInt64() {
					want = nil
				}
			} else {
				want = quantityValue(trimmed)
			}
		} else {
			want = quantityValue(trimmed)
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

// quantityValue is the exact value of a quantity ParseBytes accepts, or nil.
func quantityValue(s string) *big.Int {
	m := quantityParts.FindStringSubmatch(s)
	if m == nil {
		return nil
	}
	num, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return nil
	}
	_, frac, _ := strings.Cut(m[1], ".")
	places := len(strings.TrimRight(frac, "0"))
	mult := new(big.Rat)
	switch suffix := m[2]; {
	case len(suffix) == 2 && suffix[1] == 'i':
		if places > 9 {
			return nil
		}
		mult.SetInt(new(big.Int).Lsh(big.NewInt(1), uint(10*(strings.Index("KMGTPE", suffix[:1])+1))))
	default:
		exp := map[string]int64{"": 0, "n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}[suffix]
		if len(suffix) > 1 {
			var err error
			if exp, err = strconv.ParseInt(suffix[1:], 10, 64); err != nil || exp > 30 || exp < -30 {
				return nil
			}
		}
		p := new(big.Int).Exp(big.NewInt(10), big.NewInt(max(exp, -exp)), nil)
		if exp >= 0 {
			mult.SetInt(p)
		} else {
			mult.SetFrac(big.NewInt(1), p)
		}
	}
	v := num.Mul(num, mult)
	if !v.IsInt() || !v.Num().IsInt64() || v.Num().Int64() == math.MaxInt64 {
		return nil
	}
	return v.Num()
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

// FuzzValidSettingsAreAccepted: a duration and a rate written the way the
// documentation writes them, from values generated valid, are loaded exactly
// (a parser that refused everything would pass FuzzDurationsAndRates).
func FuzzValidSettingsAreAccepted(f *testing.F) {
	f.Add(uint32(30), uint8(1), uint16(10))
	f.Add(uint32(1), uint8(0), uint16(1))
	f.Add(uint32(90), uint8(2), uint16(1000))
	f.Fuzz(func(t *testing.T, n uint32, unit uint8, count uint16) {
		units := []time.Duration{time.Millisecond, time.Second, time.Minute, time.Hour}
		d := time.Duration(n%100000+1) * units[int(unit)%len(units)]
		limit := int(count%10000) + 1
		for _, written := range []string{d.String(), formatDuration(d)} {
			c, err := Load(lookup(map[string]string{"UPLOAD_PART_TIMEOUT": written, "STALE_LOCK_AFTER": written,
				"FINALIZE_RATE_LIMIT": fmt.Sprintf("%d/%s", limit, written)}))
			if err != nil {
				t.Fatalf("valid settings %q, %d/%s refused: %v", written, limit, written, err)
			}
			if c.UploadPartTimeout != d || c.StaleLockAfter != d || c.FinalizeLimit != limit || c.FinalizeWindow != d {
				t.Fatalf("%q, %d/%s loaded as %s, %s, %d/%s", written, limit, written, c.UploadPartTimeout, c.StaleLockAfter,
					c.FinalizeLimit, c.FinalizeWindow)
			}
		}
	})
}
