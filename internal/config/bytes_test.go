package config

import (
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"268435456", 256 << 20},
		{"256MiB", 256 << 20},
		{" 7 KiB ", 7 << 10},
		{"10MB", 10e6},
		{"5GiB", 5 << 30},
		{"256Mi", 256 << 20},
		{"1Gi", 1 << 30},
		{"1.5Gi", 3 << 29},
		{"500M", 500e6},
		{"2k", 2000},
		{"1e9", 1e9},
		{"1E", 1e18},
		{"2000m", 2},
		{"+64Ki", 64 << 10},
		{"7Ei", 7 << 60},
		{"9223372036854775807", 1<<63 - 1},
	} {
		if got, err := ParseBytes(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseBytesRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, why string }{
		{"", "invalid"},
		{"big", "invalid"},
		{"12XB", "invalid"},
		{"1K", "invalid"},
		{"Ki", "invalid"},
		{"-1", "negative"},
		{"-1Gi", "negative"},
		{"-0", "negative"},
		{"1.5", "whole number"},
		{"100m", "whole number"},
		{"1.5GiB", "invalid"},
		{"1n", "whole number"},
		{"1.5n", "decimal places"},
		{"9999999999.99999999m", "decimal places"},
		{"8Ei", "too large"},
		{"9223372036854775808", "too large"},
		{"8589934592GiB", "too large"},
		{"10E", "too large"},
		{"1e4294967296", "exponent"},
	} {
		if got, err := ParseBytes(tc.in); err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseBytes(%q) = %d, %v; want an error saying %q", tc.in, got, err, tc.why)
		}
	}
}

// Every byte-count setting takes quantities, and a bad one is refused naming
// what supplied it.
func TestByteSettingsTakeQuantities(t *testing.T) {
	t.Parallel()
	c, err := Load(lookup(map[string]string{"MAX_FILE_SIZE_BYTES": "1Gi", "PART_BUFFER_BUDGET_BYTES": "512Mi",
		"SPILL_BUDGET_BYTES": "3G", "MAX_JSON_BODY_BYTES": "128Ki", "MAX_PART_SIZE_BYTES": "16MiB"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxFileSizeBytes != 1<<30 || c.PartBufferBudget != 512<<20 || c.SpillBudget != 3e9 ||
		c.MaxJSONBodyBytes != 128<<10 || c.MaxPartSizeBytes != 16<<20 {
		t.Errorf("quantities not applied: %+v", c)
	}
	for _, v := range []string{"-1Gi", "1.5", "100m", "8Ei", "256MB/s"} {
		_, err := Load(lookup(map[string]string{"PART_BUFFER_BUDGET_BYTES": v}))
		if err == nil || !strings.Contains(err.Error(), "PART_BUFFER_BUDGET_BYTES") {
			t.Errorf("PART_BUFFER_BUDGET_BYTES=%q: err = %v, want an error naming it", v, err)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0", 1000: "1000", 64 << 10: "64KiB", 256 << 20: "256MiB", 5 << 30: "5GiB", 3 << 29: "1536MiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
		if back, err := ParseBytes(FormatBytes(n)); err != nil || back != n {
			t.Errorf("ParseBytes(FormatBytes(%d)) = %d, %v", n, back, err)
		}
	}
}
