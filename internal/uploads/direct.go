package uploads

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// In a direct session the client PUTs each part to S3 with a presigned
// UploadPart URL, so the operator never sees the bytes and keeps no record of
// parts: S3's listing of each multipart upload is the record. Everything else
// (rows, multipart uploads, expiry, delete, the finalize lock and transaction)
// is the same as for a proxied session.

// MaxPartURLTTL is the longest a presigned part URL is valid.
const MaxPartURLTTL = 15 * time.Minute

// PartURL is a presigned part upload handed to a direct session's client.
type PartURL struct {
	objectstore.PresignedPart
	ExpiresAt time.Time
}

// CheckTransfer answers ErrWrongTransfer unless the session moves its bytes
// the way the caller expects.
func CheckTransfer(sess store.Session, want string) error {
	if sess.Transfer != want {
		return ErrWrongTransfer
	}
	return nil
}

// PartURL presigns the upload of part n of f, valid for the service's part
// URL lifetime but never past the session's expiry (the upload is aborted
// then anyway). The caller has checked that the session takes parts.
func (s *Service) PartURL(ctx context.Context, sess store.Session, f store.File, n int, cs objectstore.Checksums) (PartURL, error) {
	now := s.now()
	ttl := min(s.partURLTTL(), sess.ExpiresAt.Sub(now))
	if ttl < time.Second {
		return PartURL{}, ErrExpired
	}
	// S3 counts expiry in whole seconds from the signing time.
	ttl = ttl.Truncate(time.Second)
	p, err := s.S3.PresignUploadPart(ctx, f.S3Key, f.S3UploadID, int32(n), ExpectedPartSize(sess, f, n), cs, ttl) //nolint:gosec // validated to [1, 10000]
	if err != nil {
		return PartURL{}, &S3Error{Err: err}
	}
	return PartURL{PresignedPart: p, ExpiresAt: now.Add(ttl)}, nil
}

func (s *Service) partURLTTL() time.Duration {
	if s.PartURLTTL <= 0 || s.PartURLTTL > MaxPartURLTTL {
		return MaxPartURLTTL
	}
	return s.PartURLTTL
}

// listedParts reads, from S3, the parts of each file of a direct session that
// is still being uploaded. A file whose upload is gone (completed, or aborted
// by expiry or delete) lists none.
func (s *Service) listedParts(ctx context.Context, files []store.File) (map[uuid.UUID][]store.Part, error) {
	out := make(map[uuid.UUID][]store.Part, len(files))
	for _, f := range files {
		if f.CompletedETag != "" || f.S3UploadID == "" {
			continue
		}
		parts, err := s.S3.ListParts(ctx, f.S3Key, f.S3UploadID)
		if objectstore.IsNoSuchUpload(err) {
			continue
		}
		if err != nil {
			return nil, &S3Error{Err: err}
		}
		for _, p := range parts {
			out[f.ID] = append(out[f.ID], store.Part{FileID: f.ID, PartNumber: int(p.PartNumber), ETag: p.ETag, SizeBytes: p.Size})
		}
	}
	return out, nil
}

// partsOf is the record of parts of a session: what PUTs were acknowledged
// for (proxy), or what S3 holds (direct).
func (s *Service) partsOf(ctx context.Context, sess store.Session, files []store.File) (map[uuid.UUID][]store.Part, error) {
	if sess.Transfer == store.TransferDirect {
		return s.listedParts(ctx, files)
	}
	return s.DB.Parts(ctx, sess.ID)
}
