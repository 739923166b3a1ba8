package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("not found")

// Session is an upload_sessions row.
type Session struct {
	ID            uuid.UUID
	UserID        string
	Status        string
	PartSizeBytes int64
	FinalizingAt  *time.Time
	FinalizedAt   *time.Time
	ExpiresAt     time.Time
	CreatedAt     time.Time
	Namespace     string
	Name          string
}

// File is an upload_files row.
type File struct {
	ID            uuid.UUID
	SessionID     uuid.UUID
	Ordinal       int
	Name          string
	ContentType   string
	SizeBytes     int64
	PartCount     int
	S3Key         string
	S3UploadID    string
	CompletedETag string
}

// Session statuses as stored (the phase in lower case).
const (
	StatusPending    = "pending"
	StatusActive     = "active"
	StatusFinalizing = "finalizing"
	StatusFinalized  = "finalized"
	StatusExpired    = "expired"
	StatusFailed     = "failed"
)

// EnsureSession inserts the session and its files unless they exist already,
// in one transaction, so a retried activation never duplicates or half-writes.
// The existing row wins: it returns what is stored.
func (s *Store) EnsureSession(ctx context.Context, sess Session, files []File) (Session, error) {
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO upload_sessions (id, user_id, status, part_size_bytes, expires_at, k8s_namespace, k8s_name)
			VALUES ($1, $2, 'pending', $3, $4, $5, $6)
			ON CONFLICT (id) DO NOTHING`,
			sess.ID, sess.UserID, sess.PartSizeBytes, sess.ExpiresAt, nullable(sess.Namespace), nullable(sess.Name))
		if err != nil {
			return fmt.Errorf("insert upload_sessions %s: %w", sess.ID, err)
		}
		for _, f := range files {
			_, err := tx.Exec(ctx, `
				INSERT INTO upload_files (id, session_id, ordinal, name, content_type, size_bytes, part_count, s3_key)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (id) DO NOTHING`,
				f.ID, sess.ID, f.Ordinal, f.Name, f.ContentType, f.SizeBytes, f.PartCount, f.S3Key)
			if err != nil {
				return fmt.Errorf("insert upload_files %s: %w", f.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return Session{}, err
	}
	return s.GetSession(ctx, sess.ID)
}

const sessionCols = `id, user_id, status, part_size_bytes, finalizing_at, finalized_at, expires_at, created_at,
	coalesce(k8s_namespace, ''), coalesce(k8s_name, '')`

func scanSession(row pgx.Row) (Session, error) {
	var x Session
	err := row.Scan(&x.ID, &x.UserID, &x.Status, &x.PartSizeBytes, &x.FinalizingAt, &x.FinalizedAt,
		&x.ExpiresAt, &x.CreatedAt, &x.Namespace, &x.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return x, ErrNotFound
	}
	return x, err
}

// GetSession reads one session.
func (s *Store) GetSession(ctx context.Context, id uuid.UUID) (Session, error) {
	x, err := scanSession(s.Pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM upload_sessions WHERE id = $1`, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("read upload_sessions %s: %w", id, err)
	}
	return x, err
}

const fileCols = `id, session_id, ordinal, name, content_type, size_bytes, part_count, s3_key,
	coalesce(s3_upload_id, ''), coalesce(completed_etag, '')`

func scanFile(row pgx.Row) (File, error) {
	var f File
	err := row.Scan(&f.ID, &f.SessionID, &f.Ordinal, &f.Name, &f.ContentType, &f.SizeBytes, &f.PartCount,
		&f.S3Key, &f.S3UploadID, &f.CompletedETag)
	return f, err
}

// Files lists a session's files in order.
func (s *Store) Files(ctx context.Context, sessionID uuid.UUID) ([]File, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+fileCols+` FROM upload_files WHERE session_id = $1 ORDER BY ordinal`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("list upload_files of %s: %w", sessionID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (File, error) { return scanFile(r) })
}

// FileOf reads one file of a session.
func (s *Store) FileOf(ctx context.Context, sessionID, fileID uuid.UUID) (File, error) {
	f, err := scanFile(s.Pool.QueryRow(ctx, `SELECT `+fileCols+` FROM upload_files WHERE session_id = $1 AND id = $2`, sessionID, fileID))
	if errors.Is(err, pgx.ErrNoRows) {
		return f, ErrNotFound
	}
	if err != nil {
		return f, fmt.Errorf("read upload_files %s: %w", fileID, err)
	}
	return f, nil
}

// SetUploadID records a file's S3 multipart upload id unless one is recorded
// already; false means another activation won and the caller's upload is surplus.
func (s *Store) SetUploadID(ctx context.Context, fileID uuid.UUID, uploadID string) (bool, error) {
	tag, err := s.Pool.Exec(ctx,
		`UPDATE upload_files SET s3_upload_id = $2 WHERE id = $1 AND s3_upload_id IS NULL`, fileID, uploadID)
	if err != nil {
		return false, fmt.Errorf("record upload id of file %s: %w", fileID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// TransitionStatus moves a session to status `to` if it is in one of `from`;
// false means it was not (someone else moved it first).
func (s *Store) TransitionStatus(ctx context.Context, id uuid.UUID, to string, from ...string) (bool, error) {
	tag, err := s.Pool.Exec(ctx,
		`UPDATE upload_sessions SET status = $2, updated_at = now() WHERE id = $1 AND status = ANY($3)`, id, to, from)
	if err != nil {
		return false, fmt.Errorf("set status of session %s to %s: %w", id, to, err)
	}
	return tag.RowsAffected() == 1, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// DeleteUnfinalizedSession removes a session that was never finalized, with
// its files and parts. A finalized session is kept.
func (s *Store) DeleteUnfinalizedSession(ctx context.Context, id uuid.UUID) error {
	_, err := s.Pool.Exec(ctx, `DELETE FROM upload_sessions WHERE id = $1 AND status <> 'finalized'`, id)
	if err != nil {
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	return nil
}
