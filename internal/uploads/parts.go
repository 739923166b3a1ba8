package uploads

import (
	"context"
	"errors"
	"io"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/logging"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// Session reads a session.
func (s *Service) Session(ctx context.Context, id uuid.UUID) (store.Session, error) {
	sess, err := s.DB.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return sess, ErrSessionNotFound
	}
	return sess, err
}

// File reads one file of a session (one row: this is on every part's path).
func (s *Service) File(ctx context.Context, sessionID, fileID uuid.UUID) (store.File, error) {
	f, err := s.DB.FileOf(ctx, sessionID, fileID)
	if errors.Is(err, store.ErrNotFound) {
		return f, ErrFileNotFound
	}
	return f, err
}

// CheckAcceptsParts answers whether a session takes parts now.
func (s *Service) CheckAcceptsParts(sess store.Session, f store.File) error {
	switch {
	case sess.Status == store.StatusExpired, sess.Status == store.StatusActive && s.Now().After(sess.ExpiresAt):
		return ErrExpired
	case sess.Status != store.StatusActive:
		return &NotActiveError{Status: sess.Status}
	case f.CompletedETag != "" || f.S3UploadID == "":
		// Completed by an interrupted finalize (or never started): no more parts.
		return &NotActiveError{Status: sess.Status}
	}
	return nil
}

// PartUpload is one part on its way to S3.
type PartUpload struct {
	Session    store.Session
	File       store.File
	PartNumber int
	Body       io.Reader
	Size       int64
	Checksums  objectstore.Checksums
}

// PartError wraps a failure with where it happened, for the HTTP answer.
type PartError struct {
	// Stage is "read" (the client's body) or "s3".
	Stage string
	Err   error
}

func (e *PartError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *PartError) Unwrap() error { return e.Err }

// StorePart buffers the body (memory within the budget, else a spill file),
// uploads it to S3 with the SDK's retries, and records its ETag. The record is
// written only after S3 accepted the part, so a timed-out or failed part
// leaves no half record.
func (s *Service) StorePart(ctx context.Context, p PartUpload) (store.Part, error) {
	start := s.Now()
	buf, err := s.Buffers.Fill(ctx, p.Body, p.Size)
	if err != nil {
		return store.Part{}, &PartError{Stage: "read", Err: err}
	}
	defer buf.Close()
	etag, err := s.S3.UploadPart(ctx, p.File.S3Key, p.File.S3UploadID, int32(p.PartNumber), buf, p.Size, p.Checksums)
	if err != nil {
		return store.Part{}, &PartError{Stage: "s3", Err: err}
	}
	log := logr.FromContextOrDiscard(ctx)
	if !objectstore.ETagShapeOK(etag, 0) {
		// Stored and returned as S3 gave it all the same: ETags are opaque.
		logging.Warn(log, "unexpected part ETag format from S3", "sessionId", p.Session.ID.String(),
			"fileId", p.File.ID.String(), "partNumber", p.PartNumber, "etag", etag, "expected", `"<32 hex digits>"`)
	}
	part := store.Part{FileID: p.File.ID, PartNumber: p.PartNumber, ETag: etag, SizeBytes: p.Size}
	if err := s.DB.UpsertPart(ctx, part); err != nil {
		return store.Part{}, err
	}
	log.Info("part uploaded", "sessionId", p.Session.ID.String(), "fileId", p.File.ID.String(),
		"partNumber", p.PartNumber, "sizeBytes", p.Size, "etag", etag, "durationMs", s.Now().Sub(start).Milliseconds(),
		"spilled", buf.Spilled())
	return part, nil
}

// ExpectedPartSize is the length part n of f must have.
func ExpectedPartSize(sess store.Session, f store.File, n int) int64 {
	return session.ExpectedPartSize(f.SizeBytes, sess.PartSizeBytes, n)
}
