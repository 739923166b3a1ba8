package objectstore

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// PresignedPart is a presigned UploadPart request: whoever holds it may PUT
// that one part, with exactly these headers, until Expires.
type PresignedPart struct {
	URL    string
	Method string
	// Headers must be sent as they are: they are part of the signature
	// (Content-Length, and the checksum the client declared, which S3 then
	// verifies against the bytes).
	Headers map[string]string
}

// PresignUploadPart signs an UploadPart of part n, of exactly size bytes,
// valid for ttl. Checksums the client declared are signed in, so S3 refuses
// bytes that do not match them.
func (s *Store) PresignUploadPart(ctx context.Context, key, uploadID string, n int32, size int64, cs Checksums, ttl time.Duration) (PresignedPart, error) {
	in := &s3.UploadPartInput{Bucket: &s.Bucket, Key: &key, UploadId: &uploadID, PartNumber: &n, ContentLength: &size}
	setChecksums(in, cs)
	req, err := s.presigner.PresignUploadPart(ctx, in, s3.WithPresignExpires(ttl))
	if err != nil {
		return PresignedPart{}, fmt.Errorf("presign part %d of %s: %w", n, key, err)
	}
	headers := map[string]string{}
	for name, vals := range req.SignedHeader {
		if strings.EqualFold(name, "Host") || len(vals) == 0 {
			continue
		}
		headers[http.CanonicalHeaderKey(name)] = vals[0]
	}
	return PresignedPart{URL: req.URL, Method: req.Method, Headers: headers}, nil
}

// newPresigner signs requests for endpoint (the S3 endpoint clients reach,
// which may differ from the one the operator uses), or for the client's own
// endpoint when empty.
func newPresigner(client *s3.Client, endpoint string) *s3.PresignClient {
	return s3.NewPresignClient(client, func(po *s3.PresignOptions) {
		if endpoint == "" {
			return
		}
		po.ClientOptions = append(po.ClientOptions, func(o *s3.Options) {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		})
	})
}
