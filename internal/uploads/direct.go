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

// directParts reads what each file of a direct session holds: S3's listing
// while the file's upload is open; once S3 completed it (recorded, or found by
// its object after a completion nobody recorded) the parts recorded just
// before the completion, and the file is done. A file whose upload is gone
// with no object (aborted by expiry or delete) holds nothing.
func (s *Service) directParts(ctx context.Context, sessionID uuid.UUID, files []store.File) (parts map[uuid.UUID][]store.Part, done map[uuid.UUID]bool, err error) {
	parts, done = make(map[uuid.UUID][]store.Part, len(files)), map[uuid.UUID]bool{}
	var recorded map[uuid.UUID][]store.Part
	fromRecord := func(f store.File) error {
		if recorded == nil {
			if recorded, err = s.DB.Parts(ctx, sessionID); err != nil {
				return err
			}
		}
		parts[f.ID], done[f.ID] = recorded[f.ID], true
		return nil
	}
	for _, f := range files {
		if f.S3UploadID == "" {
			continue
		}
		if f.CompletedETag != "" {
			if err := fromRecord(f); err != nil {
				return nil, nil, err
			}
			continue
		}
		listed, err := s.S3.ListParts(ctx, f.S3Key, f.S3UploadID)
		if objectstore.IsNoSuchUpload(err) {
			obj, ok, herr := s.S3.HeadObject(ctx, f.S3Key)
			if herr != nil {
				return nil, nil, &S3Error{Err: herr}
			}
			if ok && obj.Size == f.SizeBytes {
				if err := fromRecord(f); err != nil {
					return nil, nil, err
				}
			}
			continue
		}
		if err != nil {
			return nil, nil, &S3Error{Err: err}
		}
		for _, p := range listed {
			parts[f.ID] = append(parts[f.ID], store.Part{FileID: f.ID, PartNumber: int(p.PartNumber), ETag: p.ETag, SizeBytes: p.Size})
		}
	}
	return parts, done, nil
}

// partsOf is the record of parts of a session and which files are done
// (completed in S3): the registers of acknowledged PUTs (proxy), or what S3
// holds (direct).
func (s *Service) partsOf(ctx context.Context, sess store.Session, files []store.File) (map[uuid.UUID][]store.Part, map[uuid.UUID]bool, error) {
	if sess.Transfer == store.TransferDirect {
		return s.directParts(ctx, sess.ID, files)
	}
	parts, err := s.DB.Parts(ctx, sess.ID)
	done := map[uuid.UUID]bool{}
	for _, f := range files {
		done[f.ID] = f.CompletedETag != ""
	}
	return parts, done, err
}
