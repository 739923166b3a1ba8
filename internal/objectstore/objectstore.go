// Package objectstore is the S3 adapter: a configured aws-sdk-go-v2 client and
// the few multipart calls the operator makes. Production uses AWS S3 or any
// S3-compatible store (S3_ENDPOINT); tests and `make dev` use versitygw.
package objectstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Options configure the client.
type Options struct {
	Endpoint        string // empty: AWS
	Region          string
	Bucket          string
	AccessKeyID     string // empty: the SDK's default credential chain
	SecretAccessKey string
	// MaxAttempts of each S3 call, first try included (default 3).
	MaxAttempts int
	// DialTimeout bounds connecting to S3 (default 5s); the SDK's 30 s default
	// would outlive a part's 25 s budget when S3 drops packets instead of refusing.
	DialTimeout time.Duration
	// Observer, if set, counts failed attempts (metrics).
	Observer Observer
	// UnsignedPayload lets part uploads be signed with UNSIGNED-PAYLOAD instead
	// of a SHA-256 of the body (hashing every part was half of the operator's
	// CPU in `make bench`), but only where the body is protected otherwise: over
	// https (TLS), or when the client sent a checksum (Content-MD5 or
	// x-amz-checksum-*) that S3 verifies. Over plain http without a checksum
	// parts are hashed and signed whatever this says.
	UnsignedPayload bool
	// HTTPClient replaces the dialing client (nil: the default). The part
	// handler's Go benchmark sends parts to an in-memory sink with it.
	HTTPClient aws.HTTPClient
	// PresignEndpoint is the S3 endpoint presigned part URLs point at, for
	// clients that reach S3 at another address than the operator does (empty:
	// Endpoint).
	PresignEndpoint string
	// CallTimeout bounds every call except part uploads (which have the part's
	// own deadline), retries included (default 30s); CompleteMultipartUpload,
	// which S3 may take minutes to assemble, gets ten times as long. Without
	// it an S3 that accepts connections and never answers would hold a
	// reconcile (activation, expiry, delete, finalize) forever.
	CallTimeout time.Duration
}

// DefaultCallTimeout bounds S3 calls other than part uploads.
const DefaultCallTimeout = 30 * time.Second

// Store is the bucket the operator writes to.
type Store struct {
	Client *s3.Client
	Bucket string

	presigner *s3.PresignClient

	unsignedAllowed bool
	// presignSecure: presigned part URLs are https://.
	presignSecure bool
	secure        bool // the endpoint is https (AWS when empty)
	callTimeout   time.Duration
}

// bound gives one call its deadline, times times CallTimeout (the caller's,
// if sooner).
func (s *Store) bound(ctx context.Context, times int) (context.Context, context.CancelFunc) {
	if s.callTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, time.Duration(times)*s.callTimeout)
}

// New builds the S3 client.
func New(o Options) *Store {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 3
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	var httpClient aws.HTTPClient = awshttp.NewBuildableClient().WithDialerOptions(func(d *net.Dialer) {
		d.Timeout = o.DialTimeout
	}).WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = 256
		t.ResponseHeaderTimeout = 0 // bounded by each call's context instead
		if t.DialContext != nil {
			t.DialContext = wireDial(t.DialContext)
		}
	})
	if o.HTTPClient != nil {
		httpClient = o.HTTPClient
	}
	httpClient = wireClient{next: httpClient}
	cfg := aws.Config{
		Region:     o.Region,
		HTTPClient: httpClient,
		// The SDK's standard retryer: up to MaxAttempts attempts (3: the first try
		// and two retries) on throttling, 5xx and connection errors, waiting an
		// exponential backoff with full jitter before each retry: a random delay in
		// [0, 2^n) s before retry n (under 2 s, then under 4 s; capped at 20 s). Its default client-wide retry
		// token bucket silently stops retrying after a burst of failures, which
		// would make behaviour depend on what happened before; we want every call
		// to get its attempts, so the bucket is disabled (ratelimit.None).
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.RateLimiter = ratelimit.None
			})
		},
	}
	if o.AccessKeyID != "" {
		cfg.Credentials = credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, "")
	}
	base := func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
			so.UsePathStyle = true
		}
		// Checksums are sent when a client gives one (Content-MD5 or
		// x-amz-checksum-*), not computed over every part: computing one needs the
		// whole body before sending, and S3 already verifies Content-Length.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}
	client := s3.NewFromConfig(cfg, base, func(so *s3.Options) {
		so.APIOptions = append(so.APIOptions, attemptLogging(o.MaxAttempts, o.Observer))
	})
	// Presigning sends nothing, so it has no attempts to log (and the presign
	// client removes the retry loop the attempt logger is placed after).
	presigner := newPresigner(s3.NewFromConfig(cfg, base), o.PresignEndpoint)
	// An endpoint on loopback is as safe as https: no network path reaches
	// it (make dev, the tests, a sidecar).
	secure := protectedEndpoint(o.Endpoint)
	presignSecure := secure
	if o.PresignEndpoint != "" {
		presignSecure = protectedEndpoint(o.PresignEndpoint)
	}
	return &Store{Client: client, Bucket: o.Bucket, presigner: presigner, unsignedAllowed: o.UnsignedPayload, secure: secure,
		presignSecure: presignSecure, callTimeout: o.CallTimeout}
}

// PresignSecure reports whether presigned part URLs are https:// (or reach
// this machine only). Over plain http to another host a presigned part's
// body is protected only by a digest signed into the URL that an attacker
// cannot match (a SHA-256).
func (s *Store) PresignSecure() bool { return s.presignSecure }

// protectedEndpoint reports whether what is sent to endpoint cannot be read
// or changed on the way: https (or AWS's default), or a loopback host, which
// no network path reaches.
func protectedEndpoint(endpoint string) bool {
	if endpoint == "" || strings.HasPrefix(strings.ToLower(endpoint), "https://") {
		return true
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// EnsureBucket creates the bucket unless it exists (for `make dev` and tests).
func (s *Store) EnsureBucket(ctx context.Context) error {
	if err := s.HeadBucket(ctx); err == nil {
		return nil
	}
	_, err := s.Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.Bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s: %w", s.Bucket, err)
	}
	return nil
}

// HeadBucket checks that the bucket is reachable.
func (s *Store) HeadBucket(ctx context.Context) error {
	ctx, cancel := s.bound(ctx, 1)
	defer cancel()
	_, err := s.Client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.Bucket})
	if err != nil {
		return fmt.Errorf("head bucket %s: %w", s.Bucket, err)
	}
	return nil
}

// CreateMultipartUpload starts a multipart upload and returns its id; the
// object will carry contentType and contentDisposition.
func (s *Store) CreateMultipartUpload(ctx context.Context, key, contentType, contentDisposition string) (string, error) {
	return s.createMultipartUpload(ctx, key, contentType, contentDisposition, false)
}

// CreateCheckedMultipartUpload is CreateMultipartUpload for an object S3
// keeps a full-object CRC64NVME of: it computes each part's (or checks the one
// sent with it, which must then be a CRC64NVME), and at completion checks the
// whole file's against the value given (CompleteMultipartUpload's crc64nvme).
func (s *Store) CreateCheckedMultipartUpload(ctx context.Context, key, contentType, contentDisposition string) (string, error) {
	return s.createMultipartUpload(ctx, key, contentType, contentDisposition, true)
}

func (s *Store) createMultipartUpload(ctx context.Context, key, contentType, contentDisposition string, checked bool) (string, error) {
	ctx, cancel := s.bound(ctx, 1)
	defer cancel()
	in := &s3.CreateMultipartUploadInput{Bucket: &s.Bucket, Key: &key, ContentType: &contentType}
	if contentDisposition != "" {
		in.ContentDisposition = &contentDisposition
	}
	if checked {
		in.ChecksumAlgorithm, in.ChecksumType = types.ChecksumAlgorithmCrc64nvme, types.ChecksumTypeFullObject
	}
	out, err := s.Client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return "", fmt.Errorf("create multipart upload %s: %w", key, err)
	}
	return aws.ToString(out.UploadId), nil
}

// AbortMultipartUpload aborts one upload; an upload that is already gone is not an error.
func (s *Store) AbortMultipartUpload(ctx context.Context, key, uploadID string) error {
	ctx, cancel := s.bound(ctx, 1)
	defer cancel()
	_, err := s.Client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &s.Bucket, Key: &key, UploadId: &uploadID,
	})
	if err != nil && !IsNoSuchUpload(err) {
		return fmt.Errorf("abort multipart upload %s: %w", key, err)
	}
	return nil
}

// Upload is one in-progress multipart upload.
type Upload struct {
	Key       string
	UploadID  string
	Initiated time.Time // on S3's clock
}

// ListMultipartUploads lists the unfinished multipart uploads under prefix.
func (s *Store) ListMultipartUploads(ctx context.Context, prefix string) ([]Upload, error) {
	var out []Upload
	in := &s3.ListMultipartUploadsInput{Bucket: &s.Bucket, Prefix: &prefix}
	for {
		page, err := s.listUploadsPage(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list multipart uploads under %s: %w", prefix, err)
		}
		for _, u := range page.Uploads {
			out = append(out, Upload{Key: aws.ToString(u.Key), UploadID: aws.ToString(u.UploadId), Initiated: aws.ToTime(u.Initiated)})
		}
		if !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

func (s *Store) listUploadsPage(ctx context.Context, in *s3.ListMultipartUploadsInput) (*s3.ListMultipartUploadsOutput, error) {
	ctx, cancel := s.bound(ctx, 1)
	defer cancel()
	return s.Client.ListMultipartUploads(ctx, in)
}

// AbortAll aborts every unfinished multipart upload under prefix, including any
// whose id was never recorded (a crash between create and record).
func (s *Store) AbortAll(ctx context.Context, prefix string) (int, error) {
	ups, err := s.ListMultipartUploads(ctx, prefix)
	if err != nil {
		return 0, err
	}
	for _, u := range ups {
		if err := s.AbortMultipartUpload(ctx, u.Key, u.UploadID); err != nil {
			return 0, err
		}
	}
	return len(ups), nil
}

// DeleteObjects deletes every object under prefix and returns how many. A
// session that will never be finalized (expired, failed, deleted) may still
// have objects: files an interrupted or refused finalize had already
// completed. Nothing references them, so they go with the session.
func (s *Store) DeleteObjects(ctx context.Context, prefix string) (int, error) {
	n := 0
	err := s.eachObjectsPage(ctx, &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: &prefix}, func(page *s3.ListObjectsV2Output) error {
		for _, o := range page.Contents {
			if err := s.deleteObject(ctx, aws.ToString(o.Key)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// eachObjectsPage calls fn with each page of a ListObjectsV2 listing.
func (s *Store) eachObjectsPage(ctx context.Context, in *s3.ListObjectsV2Input, fn func(*s3.ListObjectsV2Output) error) error {
	for {
		page, err := s.listObjectsPage(ctx, in)
		if err != nil {
			return fmt.Errorf("list objects under %s: %w", aws.ToString(in.Prefix), err)
		}
		if err := fn(page); err != nil {
			return err
		}
		if !aws.ToBool(page.IsTruncated) {
			return nil
		}
		in.ContinuationToken = page.NextContinuationToken
	}
}

func (s *Store) listObjectsPage(ctx context.Context, in *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error) {
	ctx, cancel := s.bound(ctx, 1)
	defer cancel()
	return s.Client.ListObjectsV2(ctx, in)
}

func (s *Store) deleteObject(ctx context.Context, key string) error {
	ctx, cancel := s.bound(ctx, 1)
	defer cancel()
	if _, err := s.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.Bucket, Key: &key}); err != nil {
		return fmt.Errorf("delete object %s: %w", key, err)
	}
	return nil
}

// ListObjects lists the keys under prefix (tests and the leftover checks).
func (s *Store) ListObjects(ctx context.Context, prefix string) ([]string, error) {
	infos, err := s.ListObjectInfos(ctx, prefix)
	keys := make([]string, len(infos))
	for i, o := range infos {
		keys[i] = o.Key
	}
	return keys, err
}

// IsNoSuchUpload reports whether S3 said the multipart upload does not exist
// (AWS: 404 NoSuchUpload; versitygw answers a bogus id on completion with 400 InvalidPart).
func IsNoSuchUpload(err error) bool {
	var nsu *types.NoSuchUpload
	if errors.As(err, &nsu) {
		return true
	}
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "NoSuchUpload"
}

// ObjectInfo is one object as a listing shows it.
type ObjectInfo struct {
	Key          string
	LastModified time.Time // on S3's clock
}

// ListObjectInfos lists the objects under prefix with their last change.
func (s *Store) ListObjectInfos(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	err := s.eachObjectsPage(ctx, &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: &prefix}, func(page *s3.ListObjectsV2Output) error {
		for _, o := range page.Contents {
			out = append(out, ObjectInfo{Key: aws.ToString(o.Key), LastModified: aws.ToTime(o.LastModified)})
		}
		return nil
	})
	return out, err
}

// ListPrefixes lists the "folders" directly under prefix (keys up to the next
// "/"), e.g. one per session under "sessions/".
func (s *Store) ListPrefixes(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	err := s.eachObjectsPage(ctx, &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: &prefix, Delimiter: aws.String("/")},
		func(page *s3.ListObjectsV2Output) error {
			for _, p := range page.CommonPrefixes {
				out = append(out, aws.ToString(p.Prefix))
			}
			return nil
		})
	return out, err
}

// DeleteObject deletes one object; one that is already gone is not an error.
func (s *Store) DeleteObject(ctx context.Context, key string) error { return s.deleteObject(ctx, key) }
