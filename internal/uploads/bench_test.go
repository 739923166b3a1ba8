package uploads_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/store"
)

// BenchmarkUpsertPart: recording a part's ETag in PostgreSQL (the real server).
func BenchmarkUpsertPart(b *testing.B) {
	ctx := context.Background()
	ts := activateB(b)
	n := 0
	for b.Loop() {
		n = n%10000 + 1
		if ok, err := db.UpsertPart(ctx, store.Part{FileID: ts, PartNumber: n, ETag: `"0123456789abcdef0123456789abcdef"`, SizeBytes: 5 << 20}, time.Now(), time.Minute); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func activateB(b *testing.B) uuid.UUID {
	b.Helper()
	id := uuid.New()
	fileID := uuid.New()
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO upload_sessions (id, user_id, status, part_size_bytes, expires_at) VALUES ($1, 'bench', 'active', 5242880, now() + interval '1 hour')`, id); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO upload_files (id, session_id, ordinal, name, content_type, size_bytes, part_count, s3_key)
		VALUES ($1, $2, 0, 'b.pdf', 'application/pdf', 52428800000, 10000, 'k')`, fileID, id); err != nil {
		b.Fatal(err)
	}
	return fileID
}
