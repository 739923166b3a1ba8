package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Part is an upload_parts row: the last ETag S3 returned for a part that was
// acknowledged, and every ETag it was ever acknowledged with.
type Part struct {
	FileID     uuid.UUID `json:"-"`
	PartNumber int       `json:"partNumber"`
	ETag       string    `json:"etag"`
	SizeBytes  int64     `json:"sizeBytes"`
	AckedETags []string  `json:"-"`
}

// UpsertPart records a part that S3 stored, if the session still takes parts:
// active, not past expiresAt (at now, the service's clock), and no live
// finalize lock. false means it did not, and the part must not be
// acknowledged. The session row is share-locked for the statement, so a
// finalize taking the lock (or an expiry, or a delete) either comes after this
// record (and sees the part, which S3 already holds) or before it (and this
// record is refused). Sending the same part again replaces the record, keeping
// one row per part; its ETag joins the acknowledged ones.
func (s *Store) UpsertPart(ctx context.Context, p Part, now time.Time, staleAfter time.Duration) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.Pool.Exec(ctx, `
		WITH open AS (
			SELECT f.id FROM upload_files f JOIN upload_sessions s ON s.id = f.session_id
			WHERE f.id = $1 AND f.completed_etag IS NULL AND s.status = 'active' AND s.expires_at >= $5
			  AND `+lockFree("$6")+`
			FOR SHARE OF s)
		INSERT INTO upload_parts (file_id, part_number, etag, size_bytes, acked_etags, updated_at)
		SELECT id, $2, $3, $4, ARRAY[$3::text], now() FROM open
		ON CONFLICT (file_id, part_number) DO UPDATE SET
			etag = excluded.etag, size_bytes = excluded.size_bytes, updated_at = now(),
			acked_etags = CASE WHEN excluded.etag = ANY (upload_parts.acked_etags) THEN upload_parts.acked_etags
			                   ELSE upload_parts.acked_etags || excluded.etag END`,
		p.FileID, p.PartNumber, p.ETag, p.SizeBytes, now, staleAfter.Microseconds())
	if err != nil {
		return false, fmt.Errorf("record part %d of file %s: %w", p.PartNumber, p.FileID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Parts lists the recorded parts of every file of a session, by file id, in
// part order.
func (s *Store) Parts(ctx context.Context, sessionID uuid.UUID) (map[uuid.UUID][]Part, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.Pool.Query(ctx, `
		SELECT p.file_id, p.part_number, p.etag, p.size_bytes, p.acked_etags
		FROM upload_parts p JOIN upload_files f ON f.id = p.file_id
		WHERE f.session_id = $1 ORDER BY p.file_id, p.part_number`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("list parts of session %s: %w", sessionID, err)
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Part, error) {
		var p Part
		err := r.Scan(&p.FileID, &p.PartNumber, &p.ETag, &p.SizeBytes, &p.AckedETags)
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
