package checksum

import (
	"crypto/rand"
	"hash/crc64"
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

// The table-driven update agrees with hash/crc64 for every length and split.
func TestCRC64NVMEAgreesWithTheStandardLibrary(t *testing.T) {
	t.Parallel()
	data := make([]byte, 100_003)
	_, _ = rand.Read(data)
	tab := crc64.MakeTable(nvmePoly)
	for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 2047, 2048, 4099, len(data)} {
		if got, want := CRC64NVME(data[:n]), crc64.Checksum(data[:n], tab); got != want {
			t.Fatalf("%d bytes: %#x, want %#x", n, got, want)
		}
	}
	h := NewCRC64NVME()
	for off := 0; off < len(data); off += 1000 {
		_, _ = h.Write(data[off:min(off+1000, len(data))])
	}
	if got, want := h.Sum64(), crc64.Checksum(data, tab); got != want {
		t.Fatalf("written in pieces: %#x, want %#x", got, want)
	}
}

func BenchmarkCRC64NVME(b *testing.B) {
	data := make([]byte, 4<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		CRC64NVME(data)
	}
}
