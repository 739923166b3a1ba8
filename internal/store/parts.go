package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mocs-dev/upload-operator/internal/session"
)

// Part is an upload_parts row: a part's register, the acknowledged version.
type Part struct {
	FileID     uuid.UUID `json:"-"`
	PartNumber int       `json:"partNumber"`
	ETag       string    `json:"etag"`
	SizeBytes  int64     `json:"sizeBytes"`
	// S3PartNumber is the slot (S3 part number) holding these bytes.
	S3PartNumber int `json:"-"`
}

// PartWrite is a PUT of a part registered before its bytes go to S3: the
// slot it may write, and the token its record and its end name.
type PartWrite struct {
	Token        uuid.UUID
	S3PartNumber int
	// Slots is the file's slots per part.
	Slots int
}

// ErrPartBusy: every slot of the part is the register's or taken by a PUT in
// flight; the PUT must wait for one of them to end.
var ErrPartBusy = errors.New("the part has as many PUTs in flight as it can take")

// takesParts is the rule of a session that takes parts, over upload_files f
// and upload_sessions s: active, not past expires_at on PostgreSQL's clock,
// no live finalize lock, and the file's upload open and not completed. $stale
// is the placeholder of the caller's stale window (microseconds).
func takesParts(stale string) string {
	return `f.completed_etag IS NULL AND f.s3_upload_id IS NOT NULL AND s.status = 'active'
		AND s.expires_at > lock_clock() AND ` + lockFree(stale)
}

// BeginPartWrite registers a PUT of part n of a file before any of its bytes
// reach S3, if the session takes parts (else ok is false), and gives it a slot
// (session.ChooseSlot): ErrPartBusy when none is free. The file row is locked
// for the transaction, so two PUTs of the file register one after the other
// and never share a slot; the session row is share-locked, which orders the
// registration with the finalize lock, an expiry or a delete as a record is.
// A registration lives until busyFor has passed at most (its PUT ends before:
// EndPartWrite or RecordPart).
func (s *Store) BeginPartWrite(ctx context.Context, fileID uuid.UUID, n int, staleAfter, busyFor time.Duration) (w PartWrite, ok bool, err error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			SELECT f.slots_per_part FROM upload_files f JOIN upload_sessions s ON s.id = f.session_id
			WHERE f.id = $1 AND `+takesParts("$2")+`
			FOR NO KEY UPDATE OF f FOR SHARE OF s`, fileID, staleAfter.Microseconds()).Scan(&w.Slots)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		// A new snapshot, taken with the file locked: every registration and
		// record committed before it is seen.
		var register int
		var busy []session.SlotUse
		rows, err := tx.Query(ctx, `
			SELECT w.s3_part_number, w.in_flight, w.busy_until, coalesce(p.s3_part_number, 0)
			FROM (SELECT 1) AS one
			LEFT JOIN part_writes w ON w.file_id = $1 AND w.part_number = $2 AND w.busy_until > now()
			LEFT JOIN upload_parts p ON p.file_id = $1 AND p.part_number = $2`, fileID, n)
		if err != nil {
			return err
		}
		for rows.Next() {
			var slot *int
			var inFlight *bool
			var until *time.Time
			if err := rows.Scan(&slot, &inFlight, &until, &register); err != nil {
				rows.Close()
				return err
			}
			if slot != nil {
				busy = append(busy, session.SlotUse{S3PartNumber: *slot, InFlight: *inFlight, Until: *until})
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		slot, free := session.ChooseSlot(n, w.Slots, register, busy)
		if !free {
			return ErrPartBusy
		}
		w.Token, w.S3PartNumber = uuid.New(), slot
		if _, err := tx.Exec(ctx, `
			DELETE FROM part_writes WHERE file_id = $1 AND part_number = $2
			  AND (busy_until <= now() OR (s3_part_number = $3 AND NOT in_flight))`, fileID, n, slot); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO part_writes (token, file_id, part_number, s3_part_number, busy_until)
			VALUES ($1, $2, $3, $4, now() + $5 * interval '1 microsecond')`,
			w.Token, fileID, n, slot, busyFor.Microseconds())
		ok = err == nil
		return err
	})
	if err != nil && !errors.Is(err, ErrPartBusy) {
		err = fmt.Errorf("register a PUT of part %d of file %s: %w", n, fileID, err)
	}
	return w, ok, err
}

// RecordPart makes a registered PUT's bytes, which S3 stored in its slot, the
// part's register, if the session still takes parts and the registration is
// still in flight (one whose PUT outlived it may have lost its slot); false
// means it does not, and the part must not be acknowledged. The registration
// ends either way, its slot quarantined for quarantine: an earlier attempt of
// this PUT that the SDK gave up on may still land there, and must not land on
// a later PUT's acknowledged bytes once the register has moved on. The
// session row is share-locked for the statement, so a finalize taking the
// lock (or an expiry, or a delete) either comes after this record (and
// completes these bytes) or before it (and this record is refused, its bytes
// left in a slot nothing points at).
func (s *Store) RecordPart(ctx context.Context, token uuid.UUID, etag string, size int64, staleAfter, quarantine time.Duration) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.Pool.Exec(ctx, `
		WITH w AS (
			UPDATE part_writes SET in_flight = false, busy_until = now() + $5 * interval '1 microsecond'
			WHERE token = $1 AND in_flight RETURNING file_id, part_number, s3_part_number),
		open AS (
			SELECT w.file_id, w.part_number, w.s3_part_number
			FROM w JOIN upload_files f ON f.id = w.file_id JOIN upload_sessions s ON s.id = f.session_id
			WHERE `+takesParts("$4")+`
			FOR SHARE OF s)
		INSERT INTO upload_parts (file_id, part_number, s3_part_number, etag, size_bytes, updated_at)
		SELECT file_id, part_number, s3_part_number, $2, $3, now() FROM open
		ON CONFLICT (file_id, part_number) DO UPDATE SET
			s3_part_number = excluded.s3_part_number, etag = excluded.etag, size_bytes = excluded.size_bytes, updated_at = now()`,
		token, etag, size, staleAfter.Microseconds(), quarantine.Microseconds())
	if err != nil {
		return false, fmt.Errorf("record the PUT %s: %w", token, err)
	}
	return tag.RowsAffected() == 1, nil
}

// EndPartWrite ends a registered PUT that was not recorded. quarantine > 0
// keeps its slot from other PUTs that long: S3 may have received all of its
// bytes, and an attempt still on its way may land there.
func (s *Store) EndPartWrite(ctx context.Context, token uuid.UUID, quarantine time.Duration) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var err error
	if quarantine > 0 {
		_, err = s.Pool.Exec(ctx, `UPDATE part_writes SET in_flight = false, busy_until = now() + $2 * interval '1 microsecond'
			WHERE token = $1`, token, quarantine.Microseconds())
	} else {
		_, err = s.Pool.Exec(ctx, `DELETE FROM part_writes WHERE token = $1`, token)
	}
	if err != nil {
		return fmt.Errorf("end the PUT %s: %w", token, err)
	}
	return nil
}

// ForgetPart drops a part's register when S3 no longer holds its bytes in its
// slot (a file with one slot per part whose re-send failed, or an attempt that
// landed after its quarantine), so GET stops listing what finalize cannot
// complete and the client sends the part again. Only the register with that
// ETag is dropped: a newer one stays.
func (s *Store) ForgetPart(ctx context.Context, fileID uuid.UUID, n int, etag string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.Pool.Exec(ctx, `DELETE FROM upload_parts WHERE file_id = $1 AND part_number = $2 AND etag = $3`,
		fileID, n, etag); err != nil {
		return fmt.Errorf("forget part %d of file %s: %w", n, fileID, err)
	}
	return nil
}

// RecordListedParts records, for a direct session's file about to be
// completed, the parts S3 lists (by part number, slot = part number): once S3
// completed the upload there is no listing any more, and GET and the
// declarative finalize still need to know what the file holds.
func (s *Store) RecordListedParts(ctx context.Context, fileID uuid.UUID, parts []Part) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n := len(parts)
	nums, etags, sizes := make([]int32, n), make([]string, n), make([]int64, n)
	for i, p := range parts {
		nums[i], etags[i], sizes[i] = int32(p.PartNumber), p.ETag, p.SizeBytes //nolint:gosec // at most 10,000
	}
	_, err := s.Pool.Exec(ctx, `
		INSERT INTO upload_parts (file_id, part_number, s3_part_number, etag, size_bytes, updated_at)
		SELECT $1, u.n, u.n, u.etag, u.size, now() FROM unnest($2::int[], $3::text[], $4::bigint[]) AS u(n, etag, size)
		ON CONFLICT (file_id, part_number) DO UPDATE SET
			s3_part_number = excluded.s3_part_number, etag = excluded.etag, size_bytes = excluded.size_bytes, updated_at = now()`,
		fileID, nums, etags, sizes)
	if err != nil {
		return fmt.Errorf("record the listed parts of file %s: %w", fileID, err)
	}
	return nil
}

// Parts lists the recorded parts of every file of a session, by file id, in
// part order.
func (s *Store) Parts(ctx context.Context, sessionID uuid.UUID) (map[uuid.UUID][]Part, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.Pool.Query(ctx, `
		SELECT p.file_id, p.part_number, p.etag, p.size_bytes, p.s3_part_number
		FROM upload_parts p JOIN upload_files f ON f.id = p.file_id
		WHERE f.session_id = $1 ORDER BY p.file_id, p.part_number`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("list parts of session %s: %w", sessionID, err)
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Part, error) {
		var p Part
		err := r.Scan(&p.FileID, &p.PartNumber, &p.ETag, &p.SizeBytes, &p.S3PartNumber)
		return p, err
	})
	if err != nil {
		return nil, err
	}
	out := map[uuid.UUID][]Part{}
	for _, p := range parts {
		out[p.FileID] = append(out[p.FileID], p)
	}
	return out, nil
}

// FileProgress is how much of a file has been received.
type FileProgress struct {
	FileID        uuid.UUID
	PartsReceived int
	BytesReceived int64
}

// Progress sums the recorded parts of each file of a session.
func (s *Store) Progress(ctx context.Context, sessionID uuid.UUID) (map[uuid.UUID]FileProgress, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.Pool.Query(ctx, `
		SELECT f.id, count(p.part_number), coalesce(sum(p.size_bytes), 0)
		FROM upload_files f LEFT JOIN upload_parts p ON p.file_id = f.id
		WHERE f.session_id = $1 GROUP BY f.id`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("progress of session %s: %w", sessionID, err)
	}
	out := map[uuid.UUID]FileProgress{}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var p FileProgress
		err := r.Scan(&p.FileID, &p.PartsReceived, &p.BytesReceived)
		out[p.FileID] = p
		return struct{}{}, err
	})
	return out, err
}
