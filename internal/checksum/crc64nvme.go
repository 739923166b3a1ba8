// Package checksum holds the whole-file checksum S3 verifies for multipart
// uploads: CRC64NVME, and combining the CRCs of consecutive byte ranges into
// the CRC of their concatenation without reading the bytes again (finalize
// combines the parts' CRCs, as S3 does for a FULL_OBJECT checksum).
package checksum

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc64"
)

// nvmePoly is the CRC64NVME polynomial, bit-reversed as hash/crc64 takes it.
const nvmePoly = 0x9a6c9329ac4bc9b5

// slicing8 is the polynomial's slicing-by-8 table, built once: hash/crc64
// keeps such tables only for ISO and ECMA, and for any other polynomial builds
// one (16 KiB) on every call of 2 KiB or more.
var slicing8 = func() *[8][256]uint64 {
	var t [8][256]uint64
	t[0] = *crc64.MakeTable(nvmePoly)
	for i := range 256 {
		crc := t[0][i]
		for j := 1; j < 8; j++ {
			crc = t[0][crc&0xff] ^ crc>>8
			t[j][i] = crc
		}
	}
	return &t
}()

// update is the CRC register after p, as hash/crc64 computes it.
func update(crc uint64, p []byte) uint64 {
	t := slicing8
	crc = ^crc
	for len(p) >= 8 {
		crc ^= binary.LittleEndian.Uint64(p)
		crc = t[7][crc&0xff] ^ t[6][crc>>8&0xff] ^ t[5][crc>>16&0xff] ^ t[4][crc>>24&0xff] ^
			t[3][crc>>32&0xff] ^ t[2][crc>>40&0xff] ^ t[1][crc>>48&0xff] ^ t[0][crc>>56]
		p = p[8:]
	}
	for _, b := range p {
		crc = t[0][(crc^uint64(b))&0xff] ^ crc>>8
	}
	return ^crc
}

// NewCRC64NVME is a CRC64NVME hash; Sum gives the 8 big-endian bytes S3's
// x-amz-checksum-crc64nvme carries (base64).
func NewCRC64NVME() hash.Hash64 { return &digest{} }

// CRC64NVME of b.
func CRC64NVME(b []byte) uint64 { return update(0, b) }

type digest struct{ crc uint64 }

func (d *digest) Write(p []byte) (int, error) { d.crc = update(d.crc, p); return len(p), nil }
func (d *digest) Sum(b []byte) []byte         { return binary.BigEndian.AppendUint64(b, d.crc) }
func (d *digest) Sum64() uint64               { return d.crc }
func (d *digest) Reset()                      { d.crc = 0 }
func (d *digest) Size() int                   { return 8 }
func (d *digest) BlockSize() int              { return 1 }

// EncodeCRC64 is the base64 of crc's 8 big-endian bytes.
func EncodeCRC64(crc uint64) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, crc))
}

// DecodeCRC64 parses a base64 CRC64 (8 bytes).
func DecodeCRC64(s string) (uint64, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("not the base64 of 8 bytes: %q", s)
	}
	return binary.BigEndian.Uint64(b), nil
}

// CombineCRC64NVME is the CRC64NVME of A followed by B, given crcA, crcB and
// len(B): crc(A‖B) = crcA advanced over len(B) zero bytes, xor crcB. The
// advance is a multiplication by x^(8·lenB) modulo the polynomial, done by
// squaring (O(log lenB) steps of 64×64 bit products): a 10,000-part file
// combines in microseconds.
func CombineCRC64NVME(crcA, crcB uint64, lenB int64) uint64 {
	if lenB <= 0 {
		return crcA
	}
	return mulMod(crcA, xPow8n(lenB)) ^ crcB
}

// Polynomials below are in the reflected form hash/crc64 uses: bit 63 is the
// coefficient of x^0, bit 0 that of x^63. The pre- and post-inversions of the
// two CRCs cancel in the xor, so CombineCRC64NVME works on the CRCs as they
// are.

// mulMod multiplies a and b (reflected) modulo the polynomial.
func mulMod(a, b uint64) uint64 {
	var p uint64
	m := uint64(1) << 63 // x^0
	for i := 0; i < 64; i++ {
		if a&m != 0 {
			p ^= b
		}
		m >>= 1
		// b *= x
		if b&1 != 0 {
			b = b>>1 ^ nvmePoly
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow8n is x^(8n) modulo the polynomial (reflected).
func xPow8n(n int64) uint64 {
	result := uint64(1) << 63 // 1
	sq := uint64(1) << 55     // x^8
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			result = mulMod(result, sq)
		}
		sq = mulMod(sq, sq)
	}
	return result
}
