package uploads

import (
	"bytes"
	"crypto/md5"  //nolint:gosec // not for security: the Content-MD5 S3 defines
	"crypto/sha1" //nolint:gosec // not for security: the x-amz-checksum-sha1 S3 defines
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"hash/crc32"
	"io"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
)

// PartChecksumError is a part whose bytes do not match a checksum its client
// sent (or sent one that is not a checksum): 400 CHECKSUM_MISMATCH.
type PartChecksumError struct {
	// Header is the checksum's header, e.g. x-amz-checksum-crc32.
	Header string
	// Malformed: the value is not the base64 of a digest of that kind.
	Malformed bool
}

func (e *PartChecksumError) Error() string {
	if e.Malformed {
		return e.Header + " is not the base64 of such a digest"
	}
	return "the part's bytes do not match its " + e.Header
}

// splitChecksums divides a part's checksums into those S3 checks and those
// the operator checks itself as the bytes arrive. An upload created for a
// full-object CRC64NVME (every proxied file's) refuses a part checksum of
// any other algorithm, and S3 computes each part's CRC64NVME itself, so
// only Content-MD5 and a CRC64NVME go on; a CRC32, CRC32C, SHA-1 or SHA-256
// is checked here (the CRCs with the CPU's instructions: CRC32 costs a few
// hundredths of a CPU second per GiB).
func splitChecksums(cs objectstore.Checksums) (objectstore.Checksums, []*partCheck, error) {
	var checks []*partCheck
	for _, c := range []struct {
		header, value string
		size          int
		h             func() hash.Hash
	}{
		{"x-amz-checksum-crc32", cs.CRC32, 4, func() hash.Hash { return crc32.NewIEEE() }},
		{"x-amz-checksum-crc32c", cs.CRC32C, 4, func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }},
		{"x-amz-checksum-sha1", cs.SHA1, sha1.Size, sha1.New},
		{"x-amz-checksum-sha256", cs.SHA256, sha256.Size, sha256.New},
	} {
		if c.value == "" {
			continue
		}
		want, err := base64.StdEncoding.DecodeString(c.value)
		if err != nil || len(want) != c.size {
			return objectstore.Checksums{}, nil, &PartChecksumError{Header: c.header, Malformed: true}
		}
		checks = append(checks, &partCheck{header: c.header, h: c.h(), want: want})
	}
	if cs.ContentMD5 != "" {
		if want, err := base64.StdEncoding.DecodeString(cs.ContentMD5); err != nil || len(want) != md5.Size {
			return objectstore.Checksums{}, nil, &PartChecksumError{Header: "Content-MD5", Malformed: true}
		}
	}
	return objectstore.Checksums{ContentMD5: cs.ContentMD5, CRC64NVME: cs.CRC64NVME}, checks, nil
}

type partCheck struct {
	header string
	h      hash.Hash
	want   []byte
}

// verifyingReader hashes a part's body as it is read. When the last byte
// arrives and a checksum does not match, it withholds that byte and fails:
// the part's stream then ends short, so its S3 request is cut off before S3
// has the part whole, and nothing is stored.
type verifyingReader struct {
	r      io.Reader
	size   int64
	got    int64
	checks []*partCheck
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	for _, c := range v.checks {
		c.h.Write(p[:n])
	}
	v.got += int64(n)
	if n > 0 && v.got >= v.size {
		for _, c := range v.checks {
			if !bytes.Equal(c.h.Sum(nil), c.want) {
				return n - 1, &PartChecksumError{Header: c.header}
			}
		}
	}
	return n, err
}
