package uploads_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkPartRegister: registering a PUT and recording its ETag in
// PostgreSQL (the real server), what every part costs the database.
func BenchmarkPartRegister(b *testing.B) {
	ctx := context.Background()
	ts := activateB(b)
	n := 0
	for b.Loop() {
		n = n%10000 + 1
		w, ok, err := db.BeginPartWrite(ctx, ts, n, time.Minute, time.Minute)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		if ok, err := db.RecordPart(ctx, w.Token, `"0123456789abcdef0123456789abcdef"`, 5<<20, time.Minute, time.Minute); err != nil || !ok {
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
	if _, err := db.Pool.Exec(ctx, `INSERT INTO upload_files (id, session_id, ordinal, name, content_type, size_bytes, part_count, s3_key, s3_upload_id)
		VALUES ($1, $2, 0, 'b.pdf', 'application/pdf', 52428800000, 10000, 'k', 'u')`, fileID, id); err != nil {
		b.Fatal(err)
	}
	return fileID
}
