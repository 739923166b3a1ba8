package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/session"
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
	// LockAge is how old finalizing_at is on PostgreSQL's clock (lock_clock()),
	// nil when no lock is recorded. Staleness is judged on it, never on a
	// replica's wall clock.
	LockAge     *time.Duration
	FinalizedAt *time.Time
	ExpiresAt   time.Time
	CreatedAt   time.Time
	// Namespace, Name and UID of the resource the session is bound to.
	Namespace string
	Name      string
	UID       string
	// Transfer is how part bytes travel: TransferProxy or TransferDirect.
	Transfer string
	// LockStaleAfter is the stale window of the lock's holder, stored with the
	// lock (0: none stored).
	LockStaleAfter time.Duration
	// FinalizeTried: a finalize took the lock at some point (it stored its
	// request), so S3 may have completed some of the session's uploads.
	FinalizeTried bool
	// RemovalPending: the session ended without a MOC (failed, expired) and
	// what it held in S3 may not all be removed yet.
	RemovalPending bool
	// PastExpiry: expires_at had passed on PostgreSQL's clock when the row was
	// read. Expiry is decided on that clock (the SQL of the lock, the part
	// record and the expiry judge it so), whatever a replica's clock says.
	PastExpiry bool
}

// LockWindow is how long the lock's holder may go without renewing before its
// lock is stale: the window it took the lock with, else def.
func (x Session) LockWindow(def time.Duration) time.Duration {
	if x.LockStaleAfter > 0 {
		return x.LockStaleAfter
	}
	return def
}

// LockHeld reports whether a finalize holds a live lock: one recorded whose
// age on PostgreSQL's clock is within its holder's window (the rule lockFree
// applies in SQL; def as there).
func (x Session) LockHeld(def time.Duration) bool {
	return x.LockAge != nil && !session.LockStale(*x.LockAge, x.LockWindow(def))
}

// LockStaleIn is how long a live lock has left before it is stale, by its
// age on PostgreSQL's clock (0 when none is held).
func (x Session) LockStaleIn(def time.Duration) time.Duration {
	if !x.LockHeld(def) {
		return 0
	}
	return x.LockWindow(def) - *x.LockAge
}

// Expired reports whether the session is past its expiry: marked expired, or
// an active one whose expires_at has passed on PostgreSQL's clock or on now
// (a replica's clock may only answer so earlier; it never expires anything:
// Store.Expire judges on PostgreSQL's).
func (x Session) Expired(now time.Time) bool {
	return x.Status == StatusExpired || x.Status == StatusActive && (x.PastExpiry || now.After(x.ExpiresAt))
}

// Transfer modes of a session.
const (
	// TransferProxy: parts are PUT to the operator, which sends them to S3.
	TransferProxy = "proxy"
	// TransferDirect: the client PUTs parts to S3 with presigned URLs the
	// operator hands out; S3's listing of the upload is the record of parts.
	TransferDirect = "direct"
)

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
	// SlotsPerPart is how many S3 part numbers each part may use
	// (session.SlotsPerPart; 1 for direct sessions and older files).
	SlotsPerPart int
	// DeclaredCRC64NVME (base64) and DeclaredSHA256 (lowercase hex) are the
	// whole-file checksums the client declared ("" when it did not).
	DeclaredCRC64NVME, DeclaredSHA256 string
	// CompletedCRC64NVME is the completed object's CRC64NVME (base64), set
	// with CompletedETag ("" for an upload S3 keeps no checksum of).
	CompletedCRC64NVME string
}

// Declared reports whether the client declared a whole-file checksum.
func (f File) Declared() bool { return f.DeclaredCRC64NVME != "" || f.DeclaredSHA256 != "" }

// Session statuses as stored (the phase in lower case, and deleting).
const (
	StatusPending    = "pending"
	StatusActive     = "active"
	StatusFinalizing = "finalizing"
	StatusFinalized  = "finalized"
	StatusExpired    = "expired"
	StatusFailed     = "failed"
	// StatusDeleting: a delete claimed the session and is removing what it
	// holds; no finalize can take the lock and no part is acknowledged.
	StatusDeleting = "deleting"
)

// lockFree is the one SQL rule of the finalize lock: nobody holds it, or its
// holder's finalizing_at is strictly older, on PostgreSQL's clock, than the
// holder's stale window (stored with the lock; $stale, the caller's window in
// microseconds, for a lock taken before windows were stored). A holder renews
// finalizing_at well inside its window, so only a lock whose holder stopped
// (crashed, partitioned) goes stale. Session.LockHeld is the same rule in Go.
func lockFree(stale string) string {
	return `(finalizing_at IS NULL OR finalizing_at < lock_clock() - coalesce(finalize_stale_after_us, ` + stale +
		`) * interval '1 microsecond')`
}

// EnsureSession inserts the session and its files unless they exist already,
// in one transaction, so a retried activation never duplicates or half-writes.
// The existing row wins: it returns what is stored (a row written before
// resources' UIDs were recorded takes the UID of the resource it names). The
// caller checks the row is bound to its resource before it uses it.
func (s *Store) EnsureSession(ctx context.Context, sess Session, files []File, maxActive int) (Session, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if maxActive > 0 {
			if err := underActiveCap(ctx, tx, sess, maxActive); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO upload_sessions (id, user_id, status, part_size_bytes, expires_at, k8s_namespace, k8s_name, k8s_uid, transfer)
			VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8)
			ON CONFLICT (id) DO UPDATE SET k8s_uid = excluded.k8s_uid
			  WHERE upload_sessions.k8s_uid IS NULL AND excluded.k8s_uid IS NOT NULL
			    AND upload_sessions.k8s_namespace IS NOT DISTINCT FROM excluded.k8s_namespace
			    AND upload_sessions.k8s_name IS NOT DISTINCT FROM excluded.k8s_name
			    AND upload_sessions.user_id = excluded.user_id`,
			sess.ID, sess.UserID, sess.PartSizeBytes, sess.ExpiresAt, nullable(sess.Namespace), nullable(sess.Name), nullable(sess.UID),
			cmp.Or(sess.Transfer, TransferProxy))
		if err != nil {
			return fmt.Errorf("insert upload_sessions %s: %w", sess.ID, err)
		}
		for _, f := range files {
			_, err := tx.Exec(ctx, `
				INSERT INTO upload_files (id, session_id, ordinal, name, content_type, size_bytes, part_count, s3_key, slots_per_part,
				  declared_crc64nvme, declared_sha256)
				SELECT $1, $2, $3, $4, $5, $6, $7, $8, $13, $14, $15
				WHERE EXISTS (SELECT 1 FROM upload_sessions WHERE id = $2 AND status = 'pending'
				  AND user_id = $9 AND k8s_namespace IS NOT DISTINCT FROM $10 AND k8s_name IS NOT DISTINCT FROM $11
				  AND k8s_uid IS NOT DISTINCT FROM $12)
				ON CONFLICT (id) DO NOTHING`,
				f.ID, sess.ID, f.Ordinal, f.Name, f.ContentType, f.SizeBytes, f.PartCount, f.S3Key,
				sess.UserID, nullable(sess.Namespace), nullable(sess.Name), nullable(sess.UID), max(f.SlotsPerPart, 1),
				nullable(f.DeclaredCRC64NVME), nullable(f.DeclaredSHA256))
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

// ErrTooManyActive: the owner has as many unfinished sessions as allowed.
var ErrTooManyActive = errors.New("too many active sessions")

// underActiveCap refuses a new session when its owner already has maxActive
// sessions that are not finalized, expired or failed. Sessions of one owner
// are counted under a transaction-scoped advisory lock on the owner, so two
// creations at once cannot both slip under the cap.
func underActiveCap(ctx context.Context, tx pgx.Tx, sess Session, maxActive int) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('mocupload-active:' || $1, 0))`, sess.UserID); err != nil {
		return fmt.Errorf("lock sessions of %s: %w", sess.UserID, err)
	}
	if err := failpoint.Inject("store/after-active-cap-lock"); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRow(ctx, `
		SELECT count(*) FROM upload_sessions
		WHERE user_id = $1 AND id <> $2 AND status IN ('pending', 'active', 'finalizing')`, sess.UserID, sess.ID).Scan(&n); err != nil {
		return fmt.Errorf("count sessions of %s: %w", sess.UserID, err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM upload_sessions WHERE id = $1)`, sess.ID).Scan(&exists); err != nil {
		return err
	}
	if n >= maxActive && !exists {
		return ErrTooManyActive
	}
	return nil
}

const sessionCols = `id, user_id, status, part_size_bytes, finalizing_at,
	(extract(epoch FROM lock_clock() - finalizing_at) * 1000000)::bigint,
	finalized_at, expires_at, created_at, coalesce(k8s_namespace, ''), coalesce(k8s_name, ''), coalesce(k8s_uid, ''), transfer,
	coalesce(finalize_stale_after_us, 0), expires_at <= lock_clock(), s3_removal_pending, finalize_title IS NOT NULL`

func scanSession(row pgx.Row) (Session, error) {
	var x Session
	var ageMicros *int64
	var windowMicros int64
	err := row.Scan(&x.ID, &x.UserID, &x.Status, &x.PartSizeBytes, &x.FinalizingAt, &ageMicros, &x.FinalizedAt,
		&x.ExpiresAt, &x.CreatedAt, &x.Namespace, &x.Name, &x.UID, &x.Transfer, &windowMicros, &x.PastExpiry, &x.RemovalPending, &x.FinalizeTried)
	x.LockStaleAfter = time.Duration(windowMicros) * time.Microsecond
	if errors.Is(err, pgx.ErrNoRows) {
		return x, ErrNotFound
	}
	if ageMicros != nil {
		age := time.Duration(*ageMicros) * time.Microsecond
		x.LockAge = &age
	}
	return x, err
}

// GetSession reads one session.
func (s *Store) GetSession(ctx context.Context, id uuid.UUID) (Session, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	x, err := scanSession(s.Pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM upload_sessions WHERE id = $1`, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("read upload_sessions %s: %w", id, err)
	}
	return x, err
}

const fileCols = `id, session_id, ordinal, name, content_type, size_bytes, part_count, s3_key,
	coalesce(s3_upload_id, ''), coalesce(completed_etag, ''), slots_per_part,
	coalesce(declared_crc64nvme, ''), coalesce(declared_sha256, ''), coalesce(completed_crc64nvme, '')`

func scanFile(row pgx.Row) (File, error) {
	var f File
	err := row.Scan(&f.ID, &f.SessionID, &f.Ordinal, &f.Name, &f.ContentType, &f.SizeBytes, &f.PartCount,
		&f.S3Key, &f.S3UploadID, &f.CompletedETag, &f.SlotsPerPart, &f.DeclaredCRC64NVME, &f.DeclaredSHA256, &f.CompletedCRC64NVME)
	return f, err
}

// Files lists a session's files in order.
func (s *Store) Files(ctx context.Context, sessionID uuid.UUID) ([]File, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.Pool.Query(ctx, `SELECT `+fileCols+` FROM upload_files WHERE session_id = $1 ORDER BY ordinal`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("list upload_files of %s: %w", sessionID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (File, error) { return scanFile(r) })
}

// FileOf reads one file of a session.
func (s *Store) FileOf(ctx context.Context, sessionID, fileID uuid.UUID) (File, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
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
// already or the session is no longer being activated (a delete claimed it);
// false means the caller's upload is surplus and must be aborted. The session
// row is share-locked, so a delete's claim and this record are ordered: an
// upload recorded before the claim is aborted by the delete, one refused after
// it by its creator.
func (s *Store) SetUploadID(ctx context.Context, fileID uuid.UUID, uploadID string) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.Pool.Exec(ctx, `
		UPDATE upload_files f SET s3_upload_id = $2
		WHERE f.id = $1 AND f.s3_upload_id IS NULL
		  AND EXISTS (SELECT 1 FROM upload_sessions s WHERE s.id = f.session_id AND s.status = 'pending' FOR SHARE)`,
		fileID, uploadID)
	if err != nil {
		return false, fmt.Errorf("record upload id of file %s: %w", fileID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// LiveUploads returns which of the given multipart uploads (S3 key → upload
// ids) are recorded for a file of a session that may still use them
// (pending, active or finalizing), as "key upload-id" strings.
func (s *Store) LiveUploads(ctx context.Context, keys, uploadIDs []string) (map[string]bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.Pool.Query(ctx, `
		SELECT f.s3_key, f.s3_upload_id FROM upload_files f JOIN upload_sessions s ON s.id = f.session_id
		JOIN unnest($1::text[], $2::text[]) AS u(key, upload_id) ON f.s3_key = u.key AND f.s3_upload_id = u.upload_id
		WHERE s.status IN ('pending', 'active', 'finalizing')`, keys, uploadIDs)
	if err != nil {
		return nil, fmt.Errorf("read recorded uploads: %w", err)
	}
	live := map[string]bool{}
	for rows.Next() {
		var key, id string
		if err := rows.Scan(&key, &id); err != nil {
			return nil, fmt.Errorf("read recorded uploads: %w", err)
		}
		live[key+" "+id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read recorded uploads: %w", err)
	}
	return live, nil
}

// RecordedUploadID reads the upload id recorded for a file ("" when none, or
// when the file is gone): after a record whose outcome is unknown (the reply
// was lost), it tells whether the record committed.
func (s *Store) RecordedUploadID(ctx context.Context, fileID uuid.UUID) (string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var id string
	err := s.Pool.QueryRow(ctx, `SELECT coalesce(s3_upload_id, '') FROM upload_files WHERE id = $1`, fileID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read upload id of file %s: %w", fileID, err)
	}
	return id, nil
}

// Activate moves a pending session to active.
func (s *Store) Activate(ctx context.Context, id uuid.UUID) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.Pool.Exec(ctx,
		`UPDATE upload_sessions SET status = 'active', updated_at = now() WHERE id = $1 AND status = 'pending'`, id)
	if err != nil {
		return false, fmt.Errorf("activate session %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Expire marks an unlocked pending or active session expired once its
// expires_at has passed on PostgreSQL's clock, and a finalizing one whose
// holder stopped (its lock is stale: no finalize may take it after expiresAt,
// so nothing else would end it); false means it was not (not due yet on that
// clock, already expired, finalized, or a finalize holds a live lock). A
// replica whose clock runs fast cannot expire a session early.
func (s *Store) Expire(ctx context.Context, id uuid.UUID, staleAfter time.Duration) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.Pool.Exec(ctx, `
		UPDATE upload_sessions SET status = 'expired', finalizing_at = NULL, finalize_token = NULL, updated_at = now(),
		       s3_removal_pending = true
		WHERE id = $1 AND status IN ('pending', 'active', 'finalizing') AND expires_at <= lock_clock() AND `+lockFree("$2"), id, staleAfter.Microseconds())
	if err != nil {
		return false, fmt.Errorf("expire session %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// PendingRemovals lists up to limit sessions that ended without a MOC
// (failed, expired) whose removal from S3 has not been done yet.
func (s *Store) PendingRemovals(ctx context.Context, limit int) ([]uuid.UUID, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.Pool.Query(ctx, `SELECT id FROM upload_sessions
		WHERE s3_removal_pending AND status IN ('failed', 'expired') ORDER BY updated_at LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list pending removals: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}

// FileCount is how many files a session has.
func (s *Store) FileCount(ctx context.Context, sessionID uuid.UUID) (int, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var n int
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM upload_files WHERE session_id = $1`, sessionID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count files of session %s: %w", sessionID, err)
	}
	return n, nil
}

// ResourceRef names a session and the resource it is bound to.
type ResourceRef struct {
	ID                   uuid.UUID
	Namespace, Name, UID string
}

// BoundUnfinalized lists up to limit sessions that are not finalized, are
// bound to a resource (by UID) in one of namespaces (nil: any) and were
// created more than olderThan ago (on PostgreSQL's clock), oldest first: the
// sessions that must lose their rows and objects if their resource is gone.
func (s *Store) BoundUnfinalized(ctx context.Context, olderThan time.Duration, namespaces []string, limit int) ([]ResourceRef, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.Pool.Query(ctx, `SELECT id, k8s_namespace, k8s_name, k8s_uid FROM upload_sessions
		WHERE status <> 'finalized' AND k8s_uid IS NOT NULL AND k8s_namespace IS NOT NULL AND k8s_name IS NOT NULL
		  AND created_at < now() - $1 * interval '1 microsecond'
		  AND (cardinality($3::text[]) = 0 OR k8s_namespace = ANY($3))
		ORDER BY created_at LIMIT $2`, olderThan.Microseconds(), limit, namespaces)
	if err != nil {
		return nil, fmt.Errorf("list sessions bound to resources: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ResourceRef, error) {
		var ref ResourceRef
		err := r.Scan(&ref.ID, &ref.Namespace, &ref.Name, &ref.UID)
		return ref, err
	})
}

// RemovalDone records that S3 holds nothing of a failed or expired session.
func (s *Store) RemovalDone(ctx context.Context, id uuid.UUID) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.Pool.Exec(ctx, `UPDATE upload_sessions SET s3_removal_pending = false
		WHERE id = $1 AND status IN ('failed', 'expired')`, id); err != nil {
		return fmt.Errorf("record the removal of session %s: %w", id, err)
	}
	return nil
}

// Statuses reads the status of each of the given sessions that has a row.
func (s *Store) Statuses(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.Pool.Query(ctx, `SELECT id, status FROM upload_sessions WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read session statuses: %w", err)
	}
	out := make(map[uuid.UUID]string, len(ids))
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var id uuid.UUID
		var status string
		err := r.Scan(&id, &status)
		out[id] = status
		return struct{}{}, err
	})
	return out, err
}

// Claim is the outcome of claiming a session for deletion.
type Claim int

const (
	// Claimed: the session is now deleting; nothing else will change it.
	Claimed Claim = iota
	// ClaimGone: there is no such session (never created, or deleted).
	ClaimGone
	// ClaimFinalized: the session is finalized and stays.
	ClaimFinalized
	// ClaimLocked: a finalize holds a live lock; try again after it ends.
	ClaimLocked
)

// ClaimForDelete marks a session deleting unless it is finalized or a finalize
// holds a live lock: one conditional UPDATE, so a finalize either took the lock
// first (the delete waits) or can never take it (the delete proceeds). A stale
// lock is no obstacle: its holder stopped working before it went stale.
func (s *Store) ClaimForDelete(ctx context.Context, id uuid.UUID, staleAfter time.Duration) (Claim, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var status string
	err := s.Pool.QueryRow(ctx, `
		WITH claimed AS (
			UPDATE upload_sessions SET status = 'deleting', finalizing_at = NULL, finalize_token = NULL, updated_at = now()
			WHERE id = $1 AND status <> 'finalized' AND `+lockFree("$2")+`
			RETURNING status)
		SELECT coalesce((SELECT status FROM claimed), (SELECT status FROM upload_sessions WHERE id = $1), '')`,
		id, staleAfter.Microseconds()).Scan(&status)
	if err != nil {
		return 0, fmt.Errorf("claim session %s for deletion: %w", id, err)
	}
	switch status {
	case StatusDeleting:
		return Claimed, nil
	case "":
		return ClaimGone, nil
	case StatusFinalized:
		return ClaimFinalized, nil
	default:
		return ClaimLocked, nil
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// optional is nullable for an array element.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// DeleteClaimedSession removes a session a delete claimed, with its files and
// parts.
func (s *Store) DeleteClaimedSession(ctx context.Context, id uuid.UUID) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	_, err := s.Pool.Exec(ctx, `DELETE FROM upload_sessions WHERE id = $1 AND status = 'deleting'`, id)
	if err != nil {
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	return nil
}

// ActiveSessions counts an owner's sessions that are not finalized, expired or
// failed.
func (s *Store) ActiveSessions(ctx context.Context, owner string) (int, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var n int
	err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM upload_sessions
		WHERE user_id = $1 AND status IN ('pending', 'active', 'finalizing')`, owner).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count sessions of %s: %w", owner, err)
	}
	return n, nil
}
