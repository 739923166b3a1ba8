package objectstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Checksums a client sent with a part; passed through for S3 to verify.
type Checksums struct {
	ContentMD5 string // base64, the Content-MD5 header
	CRC32      string // base64, x-amz-checksum-crc32
	CRC32C     string
	CRC64NVME  string
	SHA1       string
	SHA256     string
}

// protectsBody reports whether S3 will check the body against a digest an
// attacker on the path cannot match: a CRC is no such digest (bytes that give
// any CRC are easy to make), so only Content-MD5 and a SHA-256 count. The
// digests travel in signed headers.
func (c Checksums) protectsBody() bool {
	return c.ContentMD5 != "" || c.SHA256 != ""
}

// UploadPart stores one part. body must be seekable: the SDK rewinds it to
// retry a transient failure without the client sending the part again, and
// hashes it for SigV4 over plain HTTP.
func (s *Store) UploadPart(ctx context.Context, key, uploadID string, n int32, body io.ReadSeeker, size int64, cs Checksums) (string, error) {
	in := &s3.UploadPartInput{
		Bucket: &s.Bucket, Key: &key, UploadId: &uploadID, PartNumber: &n,
		Body: body, ContentLength: &size,
	}
	setChecksums(in, cs)
	var opts []func(*s3.Options)
	if s.unsignedAllowed && (s.secure || cs.protectsBody()) {
		opts = append(opts, func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		})
	}
	out, err := s.Client.UploadPart(withWireBody(ctx, body), in, opts...)
	if err != nil {
		return "", fmt.Errorf("upload part %d of %s: %w", n, key, err)
	}
	return aws.ToString(out.ETag), nil
}

// setChecksums passes the client's checksums on for S3 to verify.
func setChecksums(in *s3.UploadPartInput, cs Checksums) {
	set := func(dst **string, v string) {
		if v != "" {
			*dst = aws.String(v)
		}
	}
	set(&in.ContentMD5, cs.ContentMD5)
	set(&in.ChecksumCRC32, cs.CRC32)
	set(&in.ChecksumCRC32C, cs.CRC32C)
	set(&in.ChecksumCRC64NVME, cs.CRC64NVME)
	set(&in.ChecksumSHA1, cs.SHA1)
	set(&in.ChecksumSHA256, cs.SHA256)
}

// PartInfo is one part as S3 lists it.
type PartInfo struct {
	PartNumber int32
	ETag       string
	Size       int64
	// CRC64NVME is the part's CRC64NVME (base64) in an upload created by
	// CreateCheckedMultipartUpload ("" in others).
	CRC64NVME string
}

// ListParts lists the parts S3 holds for an upload: the truth at finalize
// time, whatever the database recorded (two racing PUTs of one part can leave
// them disagreeing).
func (s *Store) ListParts(ctx context.Context, key, uploadID string) ([]PartInfo, error) {
	var out []PartInfo
	in := &s3.ListPartsInput{Bucket: &s.Bucket, Key: &key, UploadId: &uploadID}
	for {
		page, err := s.listPartsPage(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list parts of %s: %w", key, err)
		}
		for _, p := range page.Parts {
			out = append(out, PartInfo{PartNumber: aws.ToInt32(p.PartNumber), ETag: aws.ToString(p.ETag), Size: aws.ToInt64(p.Size),
				CRC64NVME: aws.ToString(p.ChecksumCRC64NVME)})
		}
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		in.PartNumberMarker = page.NextPartNumberMarker
	}
	slices.SortFunc(out, func(a, b PartInfo) int { return int(a.PartNumber - b.PartNumber) })
	return out, nil
}

// UploadExists reports whether a multipart upload still exists (S3 neither
// completed nor aborted it), with one small listing and a single attempt: it
// is asked on a failure path, where S3 may be the thing that is down.
func (s *Store) UploadExists(ctx context.Context, key, uploadID string) (bool, error) {
	ctx, cancel := s.bound(ctx, 1)
	defer cancel()
	_, err := s.Client.ListParts(ctx, &s3.ListPartsInput{Bucket: &s.Bucket, Key: &key, UploadId: &uploadID, MaxParts: aws.Int32(1)},
		func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	switch {
	case err == nil:
		return true, nil
	case IsNoSuchUpload(err):
		return false, nil
	}
	return false, fmt.Errorf("list parts of %s: %w", key, err)
}

func (s *Store) listPartsPage(ctx context.Context, in *s3.ListPartsInput) (*s3.ListPartsOutput, error) {
	ctx, cancel := s.bound(ctx, 1)
	defer cancel()
	return s.Client.ListParts(ctx, in)
}

// CompleteMultipartUpload assembles the object from parts and returns its ETag
// and, for an upload created by CreateCheckedMultipartUpload, its CRC64NVME.
// Such an upload needs each part's CRC64NVME (as ListParts gave it), and S3
// then checks the whole file's against crc64nvme (base64) when it is given.
func (s *Store) CompleteMultipartUpload(ctx context.Context, key, uploadID string, parts []PartInfo, crc64nvme string) (string, string, error) {
	ctx, cancel := s.bound(ctx, 10)
	defer cancel()
	cp := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		cp[i] = types.CompletedPart{PartNumber: aws.Int32(p.PartNumber), ETag: aws.String(p.ETag)}
		if p.CRC64NVME != "" {
			cp[i].ChecksumCRC64NVME = aws.String(p.CRC64NVME)
		}
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket: &s.Bucket, Key: &key, UploadId: &uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cp},
	}
	if crc64nvme != "" {
		in.ChecksumCRC64NVME, in.ChecksumType = aws.String(crc64nvme), types.ChecksumTypeFullObject
	}
	out, err := s.Client.CompleteMultipartUpload(ctx, in)
	if err != nil {
		return "", "", fmt.Errorf("complete multipart upload %s: %w", key, err)
	}
	return aws.ToString(out.ETag), aws.ToString(out.ChecksumCRC64NVME), nil
}

// Object is what HeadObject tells of an object.
type Object struct {
	ETag               string
	Size               int64
	ContentType        string
	ContentDisposition string
	// CRC64NVME is the object's full-object CRC64NVME, when S3 keeps one.
	CRC64NVME string
}

// HeadObject reads an object's ETag and size; ok is false when it does not exist.
func (s *Store) HeadObject(ctx context.Context, key string) (Object, bool, error) {
	ctx, cancel := s.bound(ctx, 1)
	defer cancel()
	out, err := s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.Bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		var nf *types.NotFound
		var nsk *types.NoSuchKey
		if errors.As(err, &nf) || errors.As(err, &nsk) {
			return Object{}, false, nil
		}
		return Object{}, false, fmt.Errorf("head object %s: %w", key, err)
	}
	return Object{ETag: aws.ToString(out.ETag), Size: aws.ToInt64(out.ContentLength),
		ContentType: aws.ToString(out.ContentType), ContentDisposition: aws.ToString(out.ContentDisposition),
		CRC64NVME: aws.ToString(out.ChecksumCRC64NVME)}, true, nil
}

// GetObject opens an object for reading (tests and tools check bytes with it).
func (s *Store) GetObject(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("get object %s: %w", key, err)
	}
	return out.Body, nil
}

// ETag formats. S3 returns ETags quoted. A single-part (PutObject)
// ETag is the hex MD5 of the object, `"<hex-digest>"`; a multipart ETag is the
// hex MD5 of the concatenated binary part MD5s followed by the part count,
// `"<hex-digest>-<part-count>"`. Neither is the MD5 of the whole object for a
// multipart upload, and S3 may change the format (SSE-KMS objects differ), so
// the operator stores and returns ETags exactly as S3 gave them, opaque; it
// only checks the shape to warn operators about an unexpected store.
var (
	singleETag    = regexp.MustCompile(`^"[0-9a-f]{32}"$`)
	multipartETag = regexp.MustCompile(`^"[0-9a-f]{32}-([1-9][0-9]{0,4})"$`)
)

// ETagShapeOK reports whether etag has the expected shape: multipart with
// parts > 0 (and then exactly that part count), else single-part.
func ETagShapeOK(etag string, parts int) bool {
	if parts > 0 {
		m := multipartETag.FindStringSubmatch(etag)
		return m != nil && m[1] == fmt.Sprint(parts)
	}
	return singleETag.MatchString(etag)
}

// IsChecksumMismatch reports whether S3 rejected a part because a checksum the
// client sent did not match the bytes.
func IsChecksumMismatch(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode() {
	case "BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "InvalidChecksum", "ChecksumMismatch":
		return true
	}
	return false
}

// IsClientError reports whether S3 answered with a 4xx that retrying will not
// fix (as opposed to S3 being unreachable, throttling, or failing). Some 4xx
// are transient by their code, and the SDK retries them: S3's 400
// RequestTimeout (it gave up waiting for the body) or a throttling code; once
// the retries are spent they mean S3 is unavailable, not that the part is bad.
func IsClientError(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) {
		code := api.ErrorCode()
		if _, transient := retry.DefaultRetryableErrorCodes[code]; transient {
			return false
		}
		if _, throttled := retry.DefaultThrottleErrorCodes[code]; throttled {
			return false
		}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		c := re.HTTPStatusCode()
		return c >= 400 && c < 500 && c != 408 && c != 429
	}
	return false
}

// IsInvalidPart reports whether S3 refused a completion because a listed part
// no longer matches (it was overwritten after the listing) or is missing.
// versitygw also answers a bogus upload id this way; callers check the
// upload's existence separately.
func IsInvalidPart(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && (api.ErrorCode() == "InvalidPart" || api.ErrorCode() == "InvalidPartOrder")
}
