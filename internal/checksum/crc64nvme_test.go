package checksum

import (
	"crypto/rand"
	"testing"
)

// The check value of the CRC-64/NVME catalogue entry, and the encoding S3
// uses for it.
func TestCRC64NVMECheckValue(t *testing.T) {
	t.Parallel()
	if got := CRC64NVME([]byte("123456789")); got != 0xae8b14860a799888 {
		t.Fatalf("CRC64NVME(123456789) = %#x, want 0xae8b14860a799888", got)
	}
	enc := EncodeCRC64(0xae8b14860a799888)
	if dec, err := DecodeCRC64(enc); err != nil || dec != 0xae8b14860a799888 {
		t.Fatalf("%s decodes to %#x, %v", enc, dec, err)
	}
	for _, bad := range []string{"", "AAAA", "not base64!", EncodeCRC64(1) + "AA"} {
		if _, err := DecodeCRC64(bad); err == nil {
			t.Errorf("DecodeCRC64(%q) accepted", bad)
		}
	}
}

// Combining the CRCs of consecutive pieces gives the CRC of the whole, for
// pieces of every size from empty to several MiB, in any number.
func TestCombineMatchesTheCRCOfTheConcatenation(t *testing.T) {
	t.Parallel()
	data := make([]byte, 9<<20+7)
	_, _ = rand.Read(data)
	whole := CRC64NVME(data)
	for _, cuts := range [][]int{
		{0}, {1}, {len(data) - 1}, {5 << 20}, {1, 2, 3}, {5 << 20, 5<<20 + 1}, {4096, 8 << 20},
	} {
		var crc uint64
		prev := 0
		for _, c := range append(cuts, len(data)) {
			crc = CombineCRC64NVME(crc, CRC64NVME(data[prev:c]), int64(c-prev))
			prev = c
		}
		if crc != whole {
			t.Errorf("pieces cut at %v combine to %#x, want %#x", cuts, crc, whole)
		}
	}
}

func BenchmarkCombine10000Parts(b *testing.B) {
	for b.Loop() {
		var crc uint64
		for i := 0; i < 10000; i++ {
			crc = CombineCRC64NVME(crc, uint64(i), 5<<20)
		}
		_ = crc
	}
}
