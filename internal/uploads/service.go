// Package uploads is the upload engine: the operations on a session that both
// the HTTP server and the reconciler perform (activate, abort; parts and
// finalize), written once against the store and object-store adapters.
package uploads

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// Service performs session operations.
type Service struct {
	DB     *store.Store
	S3     *objectstore.Store
	Limits session.Limits
	// SessionTTL is how long a new session may take to be finalized.
	SessionTTL time.Duration
	// StaleLockAfter is how old a finalize lock must be to be taken over.
	StaleLockAfter time.Duration
	// Buffers holds parts between client and S3 within the memory budget.
	Buffers *partbuf.Pool
	// Now is the clock; tests move it.
	Now func() time.Time
}

// Request describes a session to activate.
type Request struct {
	SessionID     uuid.UUID
	Owner         string
	Files         []session.File
	PartSizeBytes *int64
	// Namespace and Name of the session's custom resource.
	Namespace, Name string
}

// ValidationError lists what is wrong with a request.
type ValidationError struct{ Details []session.FieldError }

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid session: %v", e.Details)
}

// Validate checks a request and returns the part size it gets.
func (s *Service) Validate(req Request) (int64, error) {
	details := session.ValidateFiles(req.Files, s.Limits)
	partSize, err := session.ChoosePartSize(req.PartSizeBytes, session.LargestFile(req.Files))
	if err != nil {
		details = append(details, session.FieldError{Field: "partSizeBytes", Message: err.Error()})
	}
	if req.Owner == "" {
		details = append(details, session.FieldError{Field: "owner", Message: "is required"})
	}
	if len(details) > 0 {
		return 0, &ValidationError{Details: details}
	}
	return partSize, nil
}

// Active is an activated session: its row and its files with their uploads.
type Active struct {
	Session store.Session
	Files   []store.File
}

// Activate makes a session usable: its rows exist and every file has an S3
// multipart upload, created eagerly. It is idempotent and safe to re-run after
// a crash at any point: rows are inserted only if absent, file ids are derived
// from the session id, and an upload id is recorded only if none is, so a
// racing activation aborts its surplus upload. An upload created but never
// recorded (a crash in between) stays under the session's prefix, where
// AbortAll finds it on expiry or delete.
func (s *Service) Activate(ctx context.Context, req Request) (Active, error) {
	partSize, err := s.Validate(req)
	if err != nil {
		return Active{}, err
	}
	files := make([]store.File, len(req.Files))
	for i, f := range req.Files {
		id := session.FileID(req.SessionID, i)
		files[i] = store.File{
			ID: id, SessionID: req.SessionID, Ordinal: i, Name: f.Name, ContentType: f.ContentType,
			SizeBytes: f.SizeBytes, PartCount: session.PartCount(f.SizeBytes, partSize),
			S3Key: session.ObjectKey(req.SessionID, id, f.Name),
		}
	}
	sess, err := s.DB.EnsureSession(ctx, store.Session{
		ID: req.SessionID, UserID: req.Owner, PartSizeBytes: partSize,
		ExpiresAt: s.Now().Add(s.SessionTTL), Namespace: req.Namespace, Name: req.Name,
	}, files)
	if err != nil {
		return Active{}, err
	}
	if sess.Status != store.StatusPending {
		return s.load(ctx, sess)
	}
	stored, err := s.DB.Files(ctx, req.SessionID)
	if err != nil {
		return Active{}, err
	}
	for _, f := range stored {
		if f.S3UploadID != "" {
			continue
		}
		uploadID, err := s.S3.CreateMultipartUpload(ctx, f.S3Key, f.ContentType)
		if err != nil {
			return Active{}, &S3Error{Err: err}
		}
		won, err := s.DB.SetUploadID(ctx, f.ID, uploadID)
		if err != nil || !won {
			// Either way this upload is not the recorded one: abort it, best effort.
			_ = s.S3.AbortMultipartUpload(context.WithoutCancel(ctx), f.S3Key, uploadID)
			if err != nil {
				return Active{}, err
			}
		}
	}
	if _, err := s.DB.TransitionStatus(ctx, req.SessionID, store.StatusActive, store.StatusPending); err != nil {
		return Active{}, err
	}
	sess, err = s.DB.GetSession(ctx, req.SessionID)
	if err != nil {
		return Active{}, err
	}
	return s.load(ctx, sess)
}

func (s *Service) load(ctx context.Context, sess store.Session) (Active, error) {
	files, err := s.DB.Files(ctx, sess.ID)
	if err != nil {
		return Active{}, err
	}
	return Active{Session: sess, Files: files}, nil
}

// Discard aborts every unfinished S3 multipart upload of a session that will
// never be finalized and removes its rows, so it reads as not found. A
// finalized session is left alone: its MOC rows and objects stay.
func (s *Service) Discard(ctx context.Context, log logr.Logger, sessionID uuid.UUID) error {
	sess, err := s.DB.GetSession(ctx, sessionID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	case sess.Status == store.StatusFinalized:
		return nil
	}
	n, err := s.S3.AbortAll(ctx, session.SessionPrefix(sessionID))
	if err != nil {
		return err
	}
	if n > 0 {
		log.Info("aborted S3 multipart uploads", "sessionId", sessionID, "count", n)
	}
	return s.DB.DeleteUnfinalizedSession(ctx, sessionID)
}

// Expire aborts the S3 uploads of a session past its expiresAt and marks it
// expired; its rows stay, so GET answers 410 rather than 404.
func (s *Service) Expire(ctx context.Context, log logr.Logger, sessionID uuid.UUID) (bool, error) {
	if _, err := s.DB.TransitionStatus(ctx, sessionID, store.StatusExpired, store.StatusActive, store.StatusPending); err != nil {
		return false, err
	}
	sess, err := s.DB.GetSession(ctx, sessionID)
	if err != nil || sess.Status != store.StatusExpired {
		return false, err
	}
	// Aborting is idempotent, so an expiry interrupted after the status
	// change is finished by the next call.
	n, err := s.S3.AbortAll(ctx, session.SessionPrefix(sessionID))
	if err != nil {
		return true, err
	}
	log.Info("session expired; S3 multipart uploads aborted", "sessionId", sessionID.String(), "aborted", n)
	return true, nil
}
