package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// MOC is a moc_instructions row with its files.
type MOC struct {
	ID              uuid.UUID
	UserID          string
	UploadSessionID uuid.UUID
	Title           string
	Slug            string
	Description     string
	Files           []MOCFile
}

// MOCFile is a moc_files row.
type MOCFile struct {
	ID          uuid.UUID
	FileID      uuid.UUID
	Name        string
	ContentType string
	S3Key       string
	SizeBytes   int64
	ETag        string
	// ChecksumCRC64NVME (base64; "" for an upload S3 kept no checksum of) and
	// ChecksumSHA256 (hex; only when declared) were verified at finalize.
	ChecksumCRC64NVME, ChecksumSHA256 string
}

// Lock is the outcome of trying to take a session's finalize lock.
type Lock struct {
	Acquired bool
	// PreviousAge is, when Acquired took a stale lock over, how old that lock
	// was on PostgreSQL's clock.
	PreviousAge *time.Duration
}

// TryLock takes the finalize lock of an unfinalized, unexpired (on
// PostgreSQL's clock), active (or stale finalizing) session atomically: at
// most one concurrent caller's UPDATE matches, because PostgreSQL
// re-evaluates the WHERE clause against the row version the winner committed.
// A lock is stale when its finalizing_at is strictly older than its holder's
// window on PostgreSQL's clock. The caller's token identifies this
// acquisition (every later write of the finalize is guarded by it, so a
// holder whose lock was taken over can change nothing) and is chosen by the
// caller, so that a lock whose reply was lost can still be released by it.
// The caller's window is stored with the lock, and the title and description
// too, so a takeover can finish the request. Acquired false: read the session
// to say why.
// pastExpiry true takes the lock whatever expires_at says (re-making a MOC
// PostgreSQL lost after it was committed before expiry).
func (s *Store) TryLock(ctx context.Context, id, token uuid.UUID, staleAfter time.Duration, title, description string, pastExpiry bool) (Lock, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var prevAge *int64
	err := s.Pool.QueryRow(ctx, `
		WITH old AS (
			SELECT id, (extract(epoch FROM lock_clock() - finalizing_at) * 1000000)::bigint AS age
			FROM upload_sessions WHERE id = $1 FOR UPDATE)
		UPDATE upload_sessions u
		SET finalizing_at = lock_clock(), finalize_token = $2, status = 'finalizing', finalize_stale_after_us = $3,
		    finalize_title = $4, finalize_description = $5, updated_at = now()
		FROM old
		WHERE u.id = old.id AND u.finalized_at IS NULL AND u.status IN ('active', 'finalizing')
		  AND (u.expires_at > lock_clock() OR $6) AND `+lockFree("$3")+`
		RETURNING old.age`, id, token, staleAfter.Microseconds(), title, nullable(description), pastExpiry).Scan(&prevAge)
	if errors.Is(err, pgx.ErrNoRows) {
		return Lock{}, nil
	}
	if err != nil {
		return Lock{}, fmt.Errorf("take finalize lock of session %s: %w", id, err)
	}
	l := Lock{Acquired: true}
	if prevAge != nil {
		age := time.Duration(*prevAge) * time.Microsecond
		l.PreviousAge = &age
	}
	return l, nil
}

// RenewLock moves the lock's finalizing_at to now (PostgreSQL's clock) if the
// lock is still ours; false means it is not (taken over, or the session moved
// on) and the holder must stop.
func (s *Store) RenewLock(ctx context.Context, id, token uuid.UUID) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.Pool.Exec(ctx, `
		UPDATE upload_sessions SET finalizing_at = lock_clock()
		WHERE id = $1 AND finalize_token = $2 AND status = 'finalizing' AND finalized_at IS NULL`, id, token)
	if err != nil {
		return false, fmt.Errorf("renew finalize lock of session %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLock gives the lock back (status active) if it is still ours; false
// means it was not ours any more.
func (s *Store) ReleaseLock(ctx context.Context, id, token uuid.UUID) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.Pool.Exec(ctx, `
		UPDATE upload_sessions SET finalizing_at = NULL, finalize_token = NULL, status = 'active', updated_at = now()
		WHERE id = $1 AND finalize_token = $2 AND status = 'finalizing' AND finalized_at IS NULL`, id, token)
	if err != nil {
		return false, fmt.Errorf("release finalize lock of session %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// FailLocked marks the session failed (what it holds can never become a MOC)
// if the lock is still ours, with the removal of what it holds in S3 pending
// (RemovalDone clears it).
func (s *Store) FailLocked(ctx context.Context, id, token uuid.UUID) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.Pool.Exec(ctx, `
		UPDATE upload_sessions SET status = 'failed', finalizing_at = NULL, finalize_token = NULL, updated_at = now(),
		       s3_removal_pending = true
		WHERE id = $1 AND finalize_token = $2 AND finalized_at IS NULL`, id, token)
	if err != nil {
		return false, fmt.Errorf("fail session %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// FinalizeRequest reads the title and description stored by the lock holder.
func (s *Store) FinalizeRequest(ctx context.Context, id uuid.UUID) (title, description string, err error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err = s.Pool.QueryRow(ctx, `SELECT coalesce(finalize_title, ''), coalesce(finalize_description, '')
		FROM upload_sessions WHERE id = $1`, id).Scan(&title, &description)
	return title, description, err
}

// SetCompletedETag records that S3 completed a file's multipart upload, with
// the object's CRC64NVME ("" when S3 keeps none).
func (s *Store) SetCompletedETag(ctx context.Context, fileID uuid.UUID, etag, crc64nvme string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	_, err := s.Pool.Exec(ctx, `UPDATE upload_files SET completed_etag = $2, completed_crc64nvme = $3 WHERE id = $1`,
		fileID, etag, nullable(crc64nvme))
	if err != nil {
		return fmt.Errorf("record completion of file %s: %w", fileID, err)
	}
	return nil
}

// SlugsTaken returns which of the owner's slugs equal base or start with
// base-, but the one of sessionID's own MOC: a finalize whose lock was taken
// over and finished by another must find its session finalized, not its slug
// taken.
func (s *Store) SlugsTaken(ctx context.Context, userID, base string, sessionID uuid.UUID) (map[string]bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.Pool.Query(ctx, `SELECT slug FROM moc_instructions
		WHERE user_id = $1 AND (slug = $2 OR slug LIKE $3) AND upload_session_id <> $4`,
		userID, base, likeEscape(base)+"-%", sessionID)
	if err != nil {
		return nil, fmt.Errorf("read slugs of %s: %w", userID, err)
	}
	slugs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(slugs))
	for _, sl := range slugs {
		out[sl] = true
	}
	return out, nil
}

func likeEscape(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '%' || r == '_' || r == '\\' {
			out = append(out, '\\')
		}
		out = append(out, r)
	}
	return string(out)
}

// Errors of CommitMOC that are outcomes, not failures.
var (
	// ErrSlugTaken: the slug was taken between the check and the commit.
	ErrSlugTaken = errors.New("slug taken")
	// ErrAlreadyFinalized: another finalize committed this session first.
	ErrAlreadyFinalized = errors.New("session already finalized")
	// ErrLockLost: our lock was taken over; the new holder will finish.
	ErrLockLost = errors.New("finalize lock lost")
)

// TxHook runs inside the commit transaction after a named step; tests use it
// as a failpoint. nil in production.
type TxHook func(step string) error

// CommitMOC is the finalize transaction (READ COMMITTED). It checks the fence
// first: the session row is locked and must still carry the caller's token
// (else ErrAlreadyFinalized or ErrLockLost), so a holder that lost its lock
// writes nothing. Then INSERT moc_instructions, INSERT moc_files as one batch,
// UPDATE upload_sessions — all or nothing. It makes one attempt; the caller
// retries 40001/40P01.
func (s *Store) CommitMOC(ctx context.Context, moc MOC, token uuid.UUID, hook TxHook) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return pgx.BeginTxFunc(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		var finalized, ours bool
		err := tx.QueryRow(ctx, `
			SELECT finalized_at IS NOT NULL, finalize_token IS NOT DISTINCT FROM $2
			FROM upload_sessions WHERE id = $1 FOR UPDATE`, moc.UploadSessionID, token).Scan(&finalized, &ours)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return ErrLockLost
		case err != nil:
			return fmt.Errorf("check the finalize lock: %w", err)
		case finalized:
			return ErrAlreadyFinalized
		case !ours:
			return ErrLockLost
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO moc_instructions (id, user_id, upload_session_id, title, slug, description)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			moc.ID, moc.UserID, moc.UploadSessionID, moc.Title, moc.Slug, nullable(moc.Description)); err != nil {
			return classifyInsert("moc_instructions", err)
		}
		if hook != nil {
			if err := hook("after-insert-moc"); err != nil {
				return err
			}
		}
		n := len(moc.Files)
		ids, fileIDs := make([]uuid.UUID, n), make([]uuid.UUID, n)
		names, types, keys, etags := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		sizes := make([]int64, n)
		crcs, shas := make([]*string, n), make([]*string, n)
		for i, f := range moc.Files {
			ids[i], fileIDs[i], names[i], types[i], keys[i], sizes[i], etags[i] = f.ID, f.FileID, f.Name, f.ContentType, f.S3Key, f.SizeBytes, f.ETag
			crcs[i], shas[i] = optional(f.ChecksumCRC64NVME), optional(f.ChecksumSHA256)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO moc_files (id, moc_id, file_id, name, content_type, s3_key, size_bytes, etag, checksum_crc64nvme, checksum_sha256)
			SELECT u.id, $1, u.file_id, u.name, u.content_type, u.s3_key, u.size_bytes, u.etag, u.crc, u.sha
			FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[])
			  AS u(id, file_id, name, content_type, s3_key, size_bytes, etag, crc, sha)`,
			moc.ID, ids, fileIDs, names, types, keys, sizes, etags, crcs, shas); err != nil {
			return classifyInsert("moc_files", err)
		}
		tag, err := tx.Exec(ctx, `
			UPDATE upload_sessions
			SET finalized_at = now(), status = 'finalized', finalizing_at = NULL, finalize_token = NULL, updated_at = now()
			WHERE id = $1 AND finalize_token = $2`, moc.UploadSessionID, token)
		if err != nil {
			return fmt.Errorf("update upload_sessions: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return ErrLockLost
		}
		return nil
	})
}

// classifyInsert names a unique violation: the owner's slug index is a slug
// conflict; any other key (the MOC's id and session, a MOC file's id and file)
// is derived from the session, so a duplicate means this session's MOC exists.
func classifyInsert(table string, err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23505" {
		if pg.ConstraintName == "moc_instructions_user_slug_key" {
			return ErrSlugTaken
		}
		return fmt.Errorf("%w (%s)", ErrAlreadyFinalized, pg.ConstraintName)
	}
	return fmt.Errorf("insert %s: %w", table, err)
}

// Retryable reports whether err is a serialization failure (40001) or a
// deadlock (40P01): the transaction may succeed if run again.
func Retryable(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40001" || pg.Code == "40P01")
}

// MOCBySession reads the MOC of a finalized session.
func (s *Store) MOCBySession(ctx context.Context, sessionID uuid.UUID) (MOC, error) {
	return s.readMOC(ctx, "upload_session_id", sessionID)
}

// MOCByID reads a MOC by its id.
func (s *Store) MOCByID(ctx context.Context, id uuid.UUID) (MOC, error) {
	return s.readMOC(ctx, "id", id)
}

// readMOC reads the MOC whose column (id or upload_session_id) is id.
func (s *Store) readMOC(ctx context.Context, column string, id uuid.UUID) (MOC, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var m MOC
	err := s.Pool.QueryRow(ctx, `
		SELECT id, user_id, upload_session_id, title, slug, coalesce(description, '')
		FROM moc_instructions WHERE `+column+` = $1`, id).
		Scan(&m.ID, &m.UserID, &m.UploadSessionID, &m.Title, &m.Slug, &m.Description)
	if errors.Is(err, pgx.ErrNoRows) {
		return m, ErrNotFound
	}
	if err != nil {
		return m, fmt.Errorf("read MOC (%s %s): %w", column, id, err)
	}
	rows, err := s.Pool.Query(ctx, `
		SELECT f.id, f.file_id, f.name, f.content_type, f.s3_key, f.size_bytes, f.etag,
		  coalesce(f.checksum_crc64nvme, ''), coalesce(f.checksum_sha256, '')
		FROM moc_files f LEFT JOIN upload_files u ON u.id = f.file_id
		WHERE f.moc_id = $1 ORDER BY u.ordinal NULLS LAST, f.name`, m.ID)
	if err != nil {
		return m, fmt.Errorf("read moc_files of %s: %w", m.ID, err)
	}
	m.Files, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (MOCFile, error) {
		var f MOCFile
		err := r.Scan(&f.ID, &f.FileID, &f.Name, &f.ContentType, &f.S3Key, &f.SizeBytes, &f.ETag, &f.ChecksumCRC64NVME, &f.ChecksumSHA256)
		return f, err
	})
	return m, err
}

// ResetFileUpload starts a file over with the new S3 upload uploadID: no
// completion recorded, no parts, no PUTs registered. Finalize does it, under
// its lock, when the completed object is not the file declared.
func (s *Store) ResetFileUpload(ctx context.Context, fileID uuid.UUID, uploadID string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM part_writes WHERE file_id = $1`, fileID); err != nil {
			return fmt.Errorf("reset part_writes of %s: %w", fileID, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM upload_parts WHERE file_id = $1`, fileID); err != nil {
			return fmt.Errorf("reset upload_parts of %s: %w", fileID, err)
		}
		_, err := tx.Exec(ctx, `UPDATE upload_files SET s3_upload_id = $2, completed_etag = NULL, completed_crc64nvme = NULL
			WHERE id = $1`, fileID, uploadID)
		if err != nil {
			return fmt.Errorf("reset upload_files %s: %w", fileID, err)
		}
		return nil
	})
}
