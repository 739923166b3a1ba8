package session

import "fmt"

const (
	MiB = int64(1) << 20
	GiB = int64(1) << 30

	// MinPartSize is S3's smallest part but the last.
	MinPartSize = 5 * MiB
	// MaxPartSize is S3's largest part.
	MaxPartSize = 5 * GiB
	// MaxParts is S3's most parts in one multipart upload.
	MaxParts = 10000
	// DefaultPartSize is the part size when the largest file fits in 10,000 of them.
	DefaultPartSize = 8 * MiB
)

// ChoosePartSize returns the session's part size: the requested one if it is
// valid for every file, else (when none was requested) max(8 MiB,
// ceil(largest/10000)) rounded up to a whole MiB, or the limit when that is
// above it and the file still fits in 10,000 parts of the limit. limit is the
// largest part size allowed (at most S3's 5 GiB).
func ChoosePartSize(requested *int64, largest, limit int64) (int64, error) {
	limit = min(limit, MaxPartSize)
	if requested != nil {
		r := *requested
		switch {
		case r < MinPartSize:
			return 0, fmt.Errorf("partSizeBytes must be at least %d (5 MiB)", MinPartSize)
		case r > limit:
			return 0, fmt.Errorf("partSizeBytes must be at most %d", limit)
		case PartCount(largest, r) > MaxParts:
			return 0, fmt.Errorf("partSizeBytes %d is too small: a file of %d bytes would need more than %d parts", r, largest, MaxParts)
		}
		return r, nil
	}
	need := max((largest+MaxParts-1)/MaxParts, MinPartSize)
	size := max((need+MiB-1)/MiB*MiB, DefaultPartSize)
	switch {
	case need > limit:
		return 0, fmt.Errorf("a file of %d bytes needs parts of %d bytes, more than the %d allowed", largest, need, limit)
	case size > limit:
		// The rounded default is above the limit but the file fits under it:
		// the largest part size allowed (fewest parts).
		size = limit
	}
	return size, nil
}

// PartCount is how many parts a file of size bytes has with the given part size.
func PartCount(size, partSize int64) int {
	if size <= 0 {
		return 0
	}
	return int((size + partSize - 1) / partSize)
}

// ExpectedPartSize is the exact length part n (1-based) must have.
func ExpectedPartSize(fileSize, partSize int64, n int) int64 {
	count := PartCount(fileSize, partSize)
	if n < count {
		return partSize
	}
	return fileSize - int64(count-1)*partSize
}

// ParsePartNumber accepts only a plain decimal integer in [1, 10000]: no sign,
// no fraction, no exponent, no spaces (S3's own limit).
func ParsePartNumber(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > MaxParts {
		return 0, false
	}
	return n, true
}
