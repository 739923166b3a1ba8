package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Part is an upload_parts row: the last ETag S3 returned for a part.
type Part struct {
	FileID     uuid.UUID `json:"-"`
	PartNumber int       `json:"partNumber"`
	ETag       string    `json:"etag"`
	SizeBytes  int64     `json:"sizeBytes"`
}

// UpsertPart records a part; sending the same part again replaces the record,
// so there is always one row per part, the latest.
func (s *Store) UpsertPart(ctx context.Context, p Part) error {
	_, err := s.Pool.Exec(ctx, `
		INSERT INTO upload_parts (file_id, part_number, etag, size_bytes, updated_at)
		VALUES ($1, $2, $3, $4, now())
		ON CONFLICT (file_id, part_number)
		DO UPDATE SET etag = excluded.etag, size_bytes = excluded.size_bytes, updated_at = now()`,
		p.FileID, p.PartNumber, p.ETag, p.SizeBytes)
	if err != nil {
		return fmt.Errorf("record part %d of file %s: %w", p.PartNumber, p.FileID, err)
	}
	return nil
}

// Parts lists the recorded parts of every file of a session, by file id, in
// part order.
func (s *Store) Parts(ctx context.Context, sessionID uuid.UUID) (map[uuid.UUID][]Part, error) {
	rows, err := s.Pool.Query(ctx, `
		SELECT p.file_id, p.part_number, p.etag, p.size_bytes
		FROM upload_parts p JOIN upload_files f ON f.id = p.file_id
		WHERE f.session_id = $1 ORDER BY p.file_id, p.part_number`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("list parts of session %s: %w", sessionID, err)
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Part, error) {
		var p Part
		err := r.Scan(&p.FileID, &p.PartNumber, &p.ETag, &p.SizeBytes)
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
